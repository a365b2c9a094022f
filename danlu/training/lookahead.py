"""Lookahead (``train.lookahead``): slow weights that the live weights are pulled back to every few steps.

Every ``every`` steps, and at the last step of each epoch, the slow copy moves toward the live weights,
slow ← decay·slow + (1 − decay)·live, and the live weights are set to it. ``decay`` grows over the run as
alpha·(step/total)^ramp: early on the optimizer runs free, late in training the average over recent
steps smooths out SGD's noise (the fast CIFAR-10 trainers' weight averaging). BatchNorm's running mean
and variance are averaged with the weights (they belong to them); integer buffers (batch counts) are not.

Because every epoch ends on a pull, the live weights equal the slow ones whenever the loop evaluates or
checkpoints: evaluation, the saved weights and a resumed run see ordinary weights, and the state that must
resume is only the step count (the decay's position in the run).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from danlu.training.hooks import Callback

if TYPE_CHECKING:
    from danlu.training.hooks import Loop


class Lookahead(Callback):
    def __init__(self, every: int = 5, alpha: float = 0.77, ramp: float = 3.0):
        self.every, self.alpha, self.ramp = every, alpha, ramp
        self.step = 0  # optimizer steps seen over the whole run
        self._left = 0  # steps left in this epoch
        self._live: list[torch.Tensor] = []
        self._slow: list[torch.Tensor] = []

    def decay(self, step: int, total: int) -> float:
        return self.alpha * (min(step, total) / max(total, 1)) ** self.ramp

    def on_epoch_start(self, loop: Loop, steps: int) -> None:
        # the weights here are synced (or freshly built, or just restored from a checkpoint): they are the slow ones
        self._live = [t for t in loop.model.state_dict().values() if t.is_floating_point()]
        self._slow = [t.detach().clone() for t in self._live]
        self._left = steps

    @torch.no_grad()
    def after_step(self, loop: Loop, loss: float) -> None:
        self.step += 1
        self._left -= 1
        if self.step % self.every and self._left > 0:
            return
        torch._foreach_lerp_(self._slow, self._live, 1.0 - self.decay(self.step, loop.total_steps))
        for live, slow in zip(self._live, self._slow, strict=True):
            live.copy_(slow)

    def state_dict(self) -> dict[str, Any]:
        return {"lookahead_step": self.step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state.get("lookahead_step", 0))
