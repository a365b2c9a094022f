"""Training a boosted model (danlu/models/boosting.py): LightGBM's own loop, early-stopped on the val split.

The run folder gets what a net's training leaves: metrics.jsonl rows (every ``stride`` rounds, with the
same val metrics a net's epoch has, so ``danlu tune`` and the learning curves read them), the best
weights in model.safetensors, and status.json. A round plays the part of an epoch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from danlu.errors import DanluError
from danlu.metrics import headline
from danlu.tasks import loss_fn, score, to_predictions

ROWS = 100  # about this many metrics rows for a run that uses every round
REFIT_SCALE = 1.1  # train + val has 1/9 more rows than train: a few more rounds (AutoGluon's refit_full does so)


@dataclass
class BoostLoop:
    """What the training driver reads after a fit (the nets' ``Loop`` has the same names)."""

    model: Any
    epochs: int
    history: list[dict[str, float]] = field(default_factory=list)
    epoch: int = 0
    global_step: int = 0
    best_epoch: int = 0
    stop: Any = None
    error: BaseException | None = None
    privacy: Any = None


@dataclass
class _Stop:
    reason: str
    status: str = "done"


def _arrays(split: Any, schema: Any) -> tuple[np.ndarray, np.ndarray]:
    x = split.x.float().numpy().reshape(len(split), -1)
    y = split.y.numpy()
    if schema.task == "regression":  # the booster fits the standardized target, as the nets do
        mean = np.asarray(schema.target_mean or [0.0], np.float64)
        std = np.asarray(schema.target_std or [1.0], np.float64)
        y = ((y.reshape(len(y), -1) - mean) / std)[:, 0]
    return x, y


def _margins(preds: np.ndarray, schema: Any) -> np.ndarray:
    """LightGBM's transformed val predictions (probabilities for classification) back to margins."""
    if schema.task != "classification":
        return preds
    p = np.clip(np.asarray(preds, np.float64), 1e-15, 1 - 1e-15)
    return np.log(p / (1 - p)) if p.ndim == 1 else np.log(p)  # log-probabilities are logits up to a shift


def _row_metrics(model: Any, margins: np.ndarray, y: torch.Tensor, schema: Any) -> dict[str, float]:
    out = model.logits(margins)
    metrics = score(to_predictions(out, schema), y, schema)
    metrics["loss"] = float(loss_fn(schema)(out, y))
    return headline(metrics)


def fit_boosted(model: Any, splits: Any, schema: Any, recipe: Any, run: Any, *, say: Any = print,
                callbacks: list[Any] = ()) -> BoostLoop:
    """Train ``model``'s booster on the training split; stop when the val loss has not improved for
    ``early_stopping_rounds`` rounds (every round runs when there is no val split)."""
    import lightgbm as lgb

    from danlu.models.boosting import boosting_schedule, lightgbm_params

    opts = model.options
    if schema.task == "regression" and len(schema.targets or [1]) != 1:
        raise DanluError("boosted trees predict one regression target", hint="train one run per target")
    x_train, y_train = _arrays(splits.train, schema)
    has_val = len(splits.val) > 0
    x_val, y_val = _arrays(splits.val, schema) if has_val else (None, None)
    y_val_t = splits.val.y if has_val else None
    params = lightgbm_params(schema, opts, recipe.seed, recipe.train.threads, rows=len(x_train))
    rounds, _, refit = boosting_schedule(opts, len(x_train))
    loop = BoostLoop(model, rounds)
    stride = max(1, rounds // ROWS)
    categorical = model.categorical or "auto"
    train_set = lgb.Dataset(x_train, y_train, categorical_feature=categorical, free_raw_data=False)
    # only val is evaluated every round (early stopping needs it); the train loss is asked for at the recorded
    # rounds alone: evaluating train every round was a tenth of diamonds' training time
    valid_sets, names = [], []
    if has_val:
        valid_sets.append(lgb.Dataset(x_val, y_val, reference=train_set, categorical_feature=categorical))
        names.append("val")
    extra = [cb for cb in callbacks if hasattr(cb, "on_epoch_end") or hasattr(cb, "should_stop")]
    t0 = time.perf_counter()

    def record(env: Any) -> None:
        k = loop.global_step = env.iteration + 1
        if k % stride and k != rounds:
            return
        train_loss = next(v for _, m, v, _ in env.model.eval_train() if m != "kept")
        row: dict[str, float] = {"epoch": k, "train_loss": float(train_loss)}
        if has_val:
            row.update({f"val_{m}": v for m, v in _row_metrics(model, _margins(latest["val"], schema), y_val_t,
                                                                 schema).items()})
        row["epoch_s"] = time.perf_counter() - t0
        loop.epoch = k
        loop.history.append(row)
        run.append_metrics(row)
        run.set_status("training", epoch=k, epochs=rounds)
        if k % (stride * 10) == 0:
            shown = "  ".join(f"{m} {v:.4f}" for m, v in row.items() if m.startswith("val_") and m.count("_") == 1)
            say(f"round {k}/{rounds}  train_loss {row['train_loss']:.4f}  {shown}")
        for cb in extra:
            if hasattr(cb, "on_epoch_end"):
                cb.on_epoch_end(loop, row)
            if loop.stop is None and hasattr(cb, "should_stop"):
                loop.stop = cb.should_stop(loop)
        if loop.stop is not None:
            raise lgb.callback.EarlyStopException(env.iteration, env.evaluation_result_list)

    # the val predictions LightGBM keeps up to date itself: predicting with the booster in training instead
    # (every 20 rounds) made each later round 10x slower (penguins: 47 against 4 ms)
    latest: dict[str, np.ndarray] = {}

    def keep_val(preds: np.ndarray, data: Any) -> tuple[str, float, bool]:
        if data is not train_set:
            latest["val"] = preds
        return "kept", 0.0, False

    lgb_callbacks = [record]
    patience = int(opts["early_stopping_rounds"])
    if has_val and patience > 0:
        lgb_callbacks.append(lgb.early_stopping(patience, first_metric_only=True, verbose=False))
    try:
        booster = lgb.train(params, train_set, num_boost_round=rounds, valid_sets=valid_sets, valid_names=names,
                            callbacks=lgb_callbacks, feval=keep_val if has_val else None)
    except lgb.basic.LightGBMError as e:
        raise DanluError(f"LightGBM could not train on this data: {str(e)[:300]}",
                         hint="check the model options (danlu models) and the data") from None
    except BaseException as e:
        loop.error = e
        raise
    last = loop.global_step  # the booster returned by an early stop may already be cut to the best round
    best = booster.best_iteration or last
    if has_val and patience > 0 and best < last and loop.stop is None:
        loop.stop = _Stop(f"val loss did not improve for {patience} rounds after round {best}")
    loop.best_epoch = best
    if loop.stop is not None and getattr(loop.stop, "status", "done") == "pruned":
        model.set_booster(booster, num_iteration=best)
        return loop  # a search gave up on it: no weights, as for a pruned net
    kept = best
    if has_val and refit:
        kept = max(1, round(best * REFIT_SCALE))
        full = lgb.Dataset(np.concatenate([x_train, x_val]), np.concatenate([y_train, y_val]),
                           categorical_feature=categorical)
        booster = lgb.train(params, full, num_boost_round=kept)
        splits.notes.append(f"lightgbm: {best} rounds chosen on the val split, then trained again on train + val "
                            f"for {kept} rounds (model.refit); the val metrics in metrics.jsonl are from before that")
    model.set_booster(booster, num_iteration=kept)
    run.save_model(model, {"epoch": best, "rounds": last, "kept_rounds": kept, "monitor": "val_loss"})
    if run.writer:
        from danlu.runs.files import atomic_write_text

        atomic_write_text(run.path / "model.txt", model.model_text)  # LightGBM's own file, for other tools
    say(f"best round {best} of {last}, {kept} kept ({time.perf_counter() - t0:.1f} s)")
    return loop
