"""The training loop: plain PyTorch, owned by us (Lightning's Trainer took 24 s where this takes 10 s).

``fit`` is a short loop over a training ``step(x, y) -> (loss, outputs)``; everything else (progress,
early stopping, the run folder, a search's pruning) is a callback at a named moment (danlu/training/callbacks.py).
``build_loop`` sets up model, loaders, optimizer and schedule from a recipe. A resumed run continues
from its checkpoint and ends with the same numbers as an uninterrupted one with the same seed.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from danlu.data.splits import Splits
from danlu.errors import DanluError, did_you_mean
from danlu.inference import (
    amp_dtype,
    compiled_for,
    make_loader,
    place_model,
    select_device,
    step_amp_dtype,
)
from danlu.metrics import headline
from danlu.recipe import Recipe
from danlu.schema import Schema
from danlu.tasks import loss_fn
from danlu.training.hooks import Callback, Loop, overrides
from danlu.training.optim import build_optimizer, build_schedule


class SupervisedStep:
    """The plain supervised step: forward, loss on the labels. Distillation or DP swap or wrap it; it
    sees the input, so a teacher can too."""

    def __init__(self, model: nn.Module, criterion: Any, amp: torch.dtype | None, device: torch.device):
        self.model, self.criterion, self.amp, self.device_type = model, criterion, amp, device.type

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(self.device_type, dtype=self.amp, enabled=self.amp is not None):
            out = self.model(x)
            return self.criterion(out, y), out


def build_loop(model: nn.Module, splits: Splits, schema: Schema, recipe: Recipe,
               callbacks: list[Callback] = ()) -> Loop:
    """Device, loaders, optimizer, schedule and the supervised step for ``recipe``."""
    cfg = recipe.train
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = select_device(cfg.device)
    channels_last = place_model(model, schema, device, cfg.channels_last)
    generator = torch.Generator().manual_seed(recipe.seed)
    train_loader = make_loader(splits.train, schema, recipe, train=True, generator=generator, device=device,
                               channels_last=channels_last)
    val_loader = make_loader(splits.val, schema, recipe, train=False, generator=None, device=device,
                             channels_last=channels_last)
    steps = len(train_loader)
    if steps == 0:
        raise DanluError("the training split is empty", hint="check the data, data.limit_train and the fractions")
    optimizer = build_optimizer(model, cfg)
    amp = amp_dtype(device, cfg.amp)  # evaluation's
    step = SupervisedStep(compiled_for(model, cfg.compile, device), loss_fn(schema, cfg.label_smoothing),
                          step_amp_dtype(device, cfg.amp), device)
    loop = Loop(model, optimizer, build_schedule(optimizer, cfg, steps), generator, schema, recipe, train_loader,
                val_loader, step, device, amp, cfg.epoch_count, steps, cfg.total_steps(steps), list(callbacks))
    if cfg.privacy is not None:  # DP-SGD: per-sample clipping and noise, ε after every epoch (privacy.py)
        from danlu.training.privacy import attach

        attach(loop)
    return loop


def fit(loop: Loop) -> Loop:
    """Train ``loop.model`` in place until the last epoch or a callback's Stop."""
    cbs = loop.callbacks
    hooks = {name: [cb for cb in cbs if overrides(cb, name)] for name in
             ("on_train_start", "on_epoch_start", "after_backward", "after_step", "on_train_end")}
    grad_clip = loop.recipe.train.grad_clip
    classification = loop.schema.task == "classification"
    scaler = torch.amp.GradScaler("cuda") if loop.amp == torch.float16 else None
    model, optimizer, scheduler = loop.model, loop.optimizer, loop.scheduler
    try:
        for cb in hooks["on_train_start"]:
            cb.on_train_start(loop)
        model.train()
        while loop.stop is None and loop.epoch < loop.epochs:
            loop.epoch += 1
            epoch_steps = min(loop.steps_per_epoch, loop.total_steps - (loop.epoch - 1) * loop.steps_per_epoch)
            for cb in hooks["on_epoch_start"]:
                cb.on_epoch_start(loop, epoch_steps)
            t0 = time.perf_counter()
            seen, loss_sum, correct = 0, 0.0, 0
            for i, (x, y) in enumerate(loop.train_loader, 1):
                loss, out = loop.step(x, y)
                loss_value = float(loss.detach())
                if loss_value != loss_value or abs(loss_value) == float("inf"):
                    raise DanluError(f"the loss became {loss_value} in epoch {loop.epoch}",
                                     hint="lower train.lr, set train.grad_clip=1.0, or check the data for NaN")
                optimizer.zero_grad()
                if scaler is None:
                    loss.backward()
                else:  # fp16 on CUDA: scale the loss, skip steps whose gradients overflowed
                    scaler.scale(loss).backward()
                    scaler.unscale_(optimizer)
                for cb in hooks["after_backward"]:
                    cb.after_backward(loop)
                if grad_clip:
                    nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                if scaler is None:
                    optimizer.step()
                else:
                    scaler.step(optimizer)
                    scaler.update()
                scheduler.step()
                loop.global_step += 1
                n = len(y)
                loop.batch_size = n
                seen += n
                loss_sum += loss_value * n
                if classification:
                    correct += int((out.argmax(1) == y).sum())
                for cb in hooks["after_step"]:
                    cb.after_step(loop, loss_value)
                if i == epoch_steps:
                    break
            if loop.sum_across is not None:
                seen, loss_sum, correct = loop.sum_across([seen, loss_sum, correct])
            train_s = time.perf_counter() - t0
            row: dict[str, float] = {"epoch": loop.epoch, "train_loss": loss_sum / seen}
            if classification:
                row["train_accuracy"] = correct / seen
            val = headline(loop.evaluate(model, loop.val_loader, loop.schema, loop.amp))
            row.update({f"val_{k}": v for k, v in val.items()})
            row["lr"] = optimizer.param_groups[0]["lr"]
            row["samples_per_s"] = seen / train_s
            row["epoch_s"] = time.perf_counter() - t0
            loop.history.append(row)
            for cb in cbs:  # in order: a stop decided here is seen by the callbacks after (the run recorder)
                if overrides(cb, "on_epoch_end"):
                    cb.on_epoch_end(loop, row)
                if loop.stop is None and overrides(cb, "should_stop"):
                    loop.stop = cb.should_stop(loop)
    except BaseException as e:
        loop.error = e
        raise
    finally:
        for cb in hooks["on_train_end"]:
            cb.on_train_end(loop)
    return loop


# ---------------------------------------------------------------- which metric picks the best epoch


def metric_names(schema: Schema) -> list[str]:
    """What ``train.monitor`` and ``train.early_stop.metric`` may name for this task."""
    if schema.task == "classification":
        val = ["loss", "accuracy", "precision_macro", "recall_macro", "f1_macro"]
        val += ["precision", "recall", "f1"] if len(schema.classes or []) == 2 else []
        return ["train_loss", "train_accuracy", *(f"val_{m}" for m in val)]
    return ["train_loss", "val_loss", "val_mse", "val_mae", "val_r2"]


def check_metric_names(recipe: Recipe, schema: Schema) -> None:
    """Unknown monitor or early-stop metrics are errors (they once fell back to train_loss with the
    direction of the name typed: "accuracy" kept the epoch with the highest training loss)."""
    valid = metric_names(schema)
    stop = recipe.train.early_stop
    for key, name in (("train.monitor", recipe.train.monitor), ("train.early_stop.metric", stop and stop.metric)):
        if name and name != "auto" and name not in valid:
            raise DanluError(f"unknown {key} '{name}'", hint=f"{did_you_mean(name, valid)}for {schema.task} it "
                             f"is auto or one of: {', '.join(valid)}")


def monitor_name(recipe: Recipe, schema: Schema, has_val: bool) -> str:
    m = recipe.train.monitor
    if m == "auto":
        m = "val_accuracy" if schema.task == "classification" else "val_loss"
    if not has_val and m.startswith("val_"):
        m = "train_loss"
    return m


def standard_callbacks(recipe: Recipe, schema: Schema, has_val: bool, run: Any, *, resume: bool,
                       progress: bool, extra: list[Callback] = (), resumable: bool = True) -> list[Callback]:
    """The data fit (new runs), lookahead and early stopping (when the recipe asks), the caller's callbacks,
    progress, and the run recorder last."""
    from danlu.training.callbacks import EarlyStopping, ProgressBar, RunRecorder

    monitor = monitor_name(recipe, schema, has_val)
    out: list[Callback] = []
    if not resume:  # a model that fits layers to the data (patch whitening) does so once; a resumed run has them
        from danlu.training.fit_to_data import FitToData

        out.append(FitToData(seed=recipe.seed))
    if recipe.train.lookahead is not None:
        from danlu.training.lookahead import Lookahead

        la = recipe.train.lookahead
        out.append(Lookahead(la.every, la.alpha, la.ramp))
    stop = recipe.train.early_stop
    if stop:
        out.append(EarlyStopping(monitor if stop.metric == "auto" else stop.metric, stop.patience, stop.min_delta))
    return [*out, *extra, ProgressBar(progress), RunRecorder(run, monitor, resume=resume, resumable=resumable)]
