"""Inference apart from training: device choice, split loaders and batched prediction.

Training, evaluation, the predictor, export and (later) explanations and compression all read data and
run models the same way; this module is that one way. It never imports training or the API above it.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from danlu.data.tensors import Normalizer, TensorLoader
from danlu.errors import DanluError
from danlu.schema import Schema
from danlu.tasks import loss_fn, score, to_predictions


def select_device(name: str) -> torch.device:
    """``train.device`` → a torch device that is really there (checked before any file is written)."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise DanluError(f"unknown device '{name}'", hint="auto, cpu, cuda, cuda:0, mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DanluError("train.device=cuda but no CUDA GPU is visible", hint="use train.device=auto or cpu")
    mps = getattr(torch.backends, "mps", None)
    if dev.type == "mps" and not (mps and mps.is_available()):
        raise DanluError("train.device=mps but this machine has no Apple GPU", hint="use train.device=auto or cpu")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise DanluError(f"train.device={name} is not supported", hint="auto, cpu, cuda, cuda:0, mps")
    return dev


def has_conv(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def place_model(model: nn.Module, schema: Schema, device: torch.device, channels_last: bool = True) -> bool:
    """Move ``model`` to ``device``, channels-last for conv nets on images (mnist-cnn scores ~35 % faster);
    returns whether the inputs must be channels-last too."""
    model.to(device)
    use = channels_last and schema.kind == "image" and has_conv(model)
    if use:
        model.to(memory_format=torch.channels_last)
    return use


def amp_dtype(device: torch.device, enabled: bool | str) -> torch.dtype | None:
    """bf16 (or fp16 where bf16 is missing) autocast on CUDA; full precision elsewhere (evaluation and
    inference on a CPU stay fp32 whatever train.amp says: the reported metrics are the served model's)."""
    if not enabled or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


_SAID = {"no_bf16": False}


def step_amp_dtype(device: torch.device, setting: bool | str) -> torch.dtype | None:
    """The training step's autocast: as ``amp_dtype`` on CUDA; with ``train.amp: bf16`` also bf16 on a CPU
    that computes it natively (AVX512-BF16 or AMX), where oneDNN's bf16 convolutions train cifar10-fast's net
    2.06x faster than fp32 (1,610 vs 782 samples/s, Zen 4 EPYC, 2 cores). Elsewhere bf16 is emulated and
    slower than fp32, so the step stays fp32 (with a warning, once a process)."""
    if device.type == "cpu" and setting == "bf16":
        if cpu_has_native_bf16():
            return torch.bfloat16
        if not _SAID["no_bf16"]:  # once a process: a federation builds a loop per client and round
            import logging

            _SAID["no_bf16"] = True
            logging.getLogger("danlu").warning(
                "train.amp=bf16: this CPU has no native bf16 (AVX512-BF16 or AMX), so the training step runs in "
                "fp32, about half as fast as with it (cifar10-fast: 376 vs 814 samples/s on a Zen 4 CPU)")
        return None
    return amp_dtype(device, setting)


def cpu_has_native_bf16() -> bool:
    """Whether the CPU has bf16 arithmetic in hardware (Linux's cpuinfo flags); DANLU_CPU_BF16=0/1 overrides."""
    forced = os.environ.get("DANLU_CPU_BF16")
    if forced in ("0", "1"):
        return forced == "1"
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def compiled_for(model: nn.Module, mode: str, device: torch.device) -> nn.Module:
    """The module the training step calls: ``torch.compile(model)`` where ``train.compile`` asks for it (auto:
    on CUDA only), else the model itself. Both share parameters, so checkpoints and evaluation use ``model``."""
    if mode == "on" or (mode == "auto" and device.type == "cuda"):
        return torch.compile(model)
    return model


def make_loader(split: Any, schema: Schema, recipe: Any, *, train: bool, generator: torch.Generator | None,
                device: torch.device, channels_last: bool) -> Any:
    """The loader for one split: the in-memory fast path, or the streaming one for big image folders."""
    bs = recipe.train.batch_size if train else recipe.train.eval_batch_size
    normalizer = Normalizer(schema.mean, schema.std, schema.input_shape[0]) if schema.kind == "image" else None
    kwargs = dict(kind=schema.kind, shuffle=train, generator=generator, normalizer=normalizer,
                  augment=recipe.data.augment if train else None, pad_id=schema.text.get("pad_id", 0),
                  device=device, channels_last=channels_last)
    if hasattr(split, "stream_loader"):
        return split.stream_loader(bs, **kwargs)
    return TensorLoader(split, bs, **kwargs, poisson=train and recipe.train.privacy is not None)  # DP-SGD's sampling


@torch.no_grad()
def predict(model: nn.Module, loader: Any, schema: Schema, amp: torch.dtype | None = None
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(raw outputs, predictions, targets) for a whole split, in eval mode."""
    was_training = model.training
    model.eval()
    outs, ys = [], []
    for x, y in loader:
        with torch.autocast(loader.device.type, dtype=amp, enabled=amp is not None):
            outs.append(model(x).float())
        ys.append(y)
    model.train(was_training)
    if not outs:
        return torch.empty(0), torch.empty(0), torch.empty(0)
    out = torch.cat(outs)
    return out, to_predictions(out, schema), torch.cat(ys)


def evaluate_loader(model: nn.Module, loader: Any, schema: Schema, amp: torch.dtype | None = None) -> dict:
    """Full metrics (and the loss) of ``model`` on a loader's split; empty for an empty split."""
    out, preds, y = predict(model, loader, schema, amp)
    if len(y) == 0:
        return {}
    metrics = score(preds, y, schema)
    metrics["loss"] = float(loss_fn(schema)(out, y))
    return metrics
