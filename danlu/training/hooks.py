"""The named moments of a training run where other features plug in, and what they see of it.

A callback overrides any of the hooks of ``Callback``; each gets the ``Loop`` (the run's model, optimizer,
epoch, step and history) and, at an epoch's end, that epoch's metrics. Progress, early stopping, the run
folder, a search's pruning, tracking and privacy accounting are callbacks. A callback with state (early
stopping's patience) gives ``state_dict``/``load_state_dict`` and is resumed with the run.

    class PrintLoss(Callback):
        def on_epoch_end(self, loop, metrics):
            print(loop.epoch, metrics["train_loss"])

    danlu.train("digits-mlp", callbacks=[PrintLoss()])

Kept apart from the loop and the standard callbacks so that plug-ins import the hooks, never the loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from danlu.inference import evaluate_loader
from danlu.recipe import Recipe
from danlu.schema import Schema


@dataclass(frozen=True)
class Stop:
    """Why training ends before its last epoch, and the state the run ends in: "done" (the best weights
    are evaluated on the test split) or "pruned" (a search gave up on it; no test evaluation)."""

    reason: str
    status: str = "done"


class Callback:
    """Every hook is optional; the loop calls only those a callback overrides."""

    def on_train_start(self, loop: Loop) -> None: ...

    def on_epoch_start(self, loop: Loop, steps: int) -> None: ...

    def after_backward(self, loop: Loop) -> None:
        """Gradients are in ``p.grad`` (unscaled under fp16), before clipping and the optimizer step."""

    def after_step(self, loop: Loop, loss: float) -> None:
        """After the optimizer and schedule stepped; ``loss`` is the batch's (a float: reading it syncs)."""

    def on_epoch_end(self, loop: Loop, metrics: dict[str, float]) -> None: ...

    def should_stop(self, loop: Loop) -> Stop | None:
        """Asked after this callback's ``on_epoch_end``; the first Stop ends training."""
        return None

    def on_train_end(self, loop: Loop) -> None:
        """Always called, also when training fails (``loop.error`` holds the exception)."""


def overrides(cb: Callback, hook: str) -> bool:
    return getattr(type(cb), hook) is not getattr(Callback, hook)



@dataclass
class Loop:
    """What callbacks see of a run. They read it; ``epoch``, ``history`` and ``stop`` are set by the loop
    (and by the run recorder when it resumes a run)."""

    model: nn.Module
    optimizer: Any
    scheduler: Any
    generator: torch.Generator
    schema: Schema
    recipe: Recipe
    train_loader: Any
    val_loader: Any
    step: Any  # step(x, y) -> (loss, outputs)
    device: torch.device
    amp: torch.dtype | None = None
    epochs: int = 1
    steps_per_epoch: int = 1
    total_steps: int = 1
    callbacks: list[Callback] = field(default_factory=list)
    epoch: int = 0  # the last finished epoch (the current one inside an epoch's hooks)
    global_step: int = 0
    batch_size: int = 0  # of the batch just trained
    history: list[dict[str, float]] = field(default_factory=list)
    stop: Stop | None = None
    error: BaseException | None = None
    # distributed training (danlu/training/distributed.py) scores the val split across processes and sums the
    # epoch's training counts over them; one process keeps these defaults
    evaluate: Any = evaluate_loader
    sum_across: Any = None  # [floats] -> the same floats summed over every process
    privacy: Any = None  # the DP accountant (danlu/training/privacy.py) when train.privacy is set
