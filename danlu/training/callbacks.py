"""The standard callbacks every run gets: early stopping, the progress bar and the run recorder.

The hooks they implement (``Callback``, ``Stop``, ``Loop``) live in danlu/training/hooks.py.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from danlu.metrics import higher_is_better
from danlu.training.hooks import Callback, Loop, Stop

if TYPE_CHECKING:
    from danlu.runs.folder import RunFolder


class EarlyStopping(Callback):
    """Stop when ``metric`` has not improved by ``min_delta`` for ``patience`` epochs."""

    def __init__(self, metric: str, patience: int, min_delta: float = 0.0):
        self.metric, self.patience, self.min_delta = metric, patience, min_delta
        self.best: float | None = None
        self.bad_epochs = 0

    def on_epoch_end(self, loop: Loop, metrics: dict[str, float]) -> None:
        value = metrics.get(self.metric, metrics["train_loss"])
        if higher_is_better(self.metric):
            improved = self.best is None or value > self.best + self.min_delta
        else:
            improved = self.best is None or value < self.best - self.min_delta
        self.best, self.bad_epochs = (value, 0) if improved else (self.best, self.bad_epochs + 1)

    def should_stop(self, loop: Loop) -> Stop | None:
        if self.bad_epochs >= self.patience and loop.epoch < loop.epochs:
            return Stop(f"early stop: {self.metric} has not improved for {self.bad_epochs} epochs")
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"stop_best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.bad_epochs = state.get("stop_best"), state.get("bad_epochs", 0)


class ProgressBar(Callback):
    """A rich bar on a terminal, plain per-epoch lines otherwise; all on stderr."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._progress: Any = None
        self._seen = 0
        self._loss = 0.0
        self._t0 = 0.0

    def on_train_start(self, loop: Loop) -> None:
        from danlu.training.progress import Progress

        self._progress = Progress(loop.epochs, loop.steps_per_epoch, self.enabled).__enter__()

    def on_epoch_start(self, loop: Loop, steps: int) -> None:
        self._progress.start_epoch(loop.epoch, steps)
        self._seen, self._loss, self._t0 = 0, 0.0, time.perf_counter()

    def after_step(self, loop: Loop, loss: float) -> None:
        n = loop.batch_size
        self._seen += n
        self._loss += loss * n
        self._progress.step(self._loss / self._seen, self._seen / max(time.perf_counter() - self._t0, 1e-9))

    def on_epoch_end(self, loop: Loop, metrics: dict[str, float]) -> None:
        shown = {k: v for k, v in metrics.items() if k.endswith(("loss", "accuracy", "r2", "epsilon"))}
        self._progress.end_epoch(loop.epoch, shown, metrics["samples_per_s"])
        if loop.stop is not None:  # decided by a callback before this one (early stopping, a pruner)
            self._progress.note(loop.stop.reason)

    def on_train_end(self, loop: Loop) -> None:
        if self._progress is not None:
            self._progress.__exit__(None, None, None)


class RunRecorder(Callback):
    """Writes each epoch into the run folder: the metrics row, the best weights by ``monitor``, and the
    whole resumable state (model, optimizer, schedule, RNGs, history, every callback's state) as one file.

    Put it last: its checkpoint records what the other callbacks decided this epoch (a stop included).
    """

    def __init__(self, run: RunFolder, monitor: str, resume: bool = False, resumable: bool = True):
        self.run, self.monitor, self.resume, self.resumable = run, monitor, resume, resumable
        self.best_value: float | None = None
        self.best: dict[str, float] = {}
        self.best_epoch = 0

    def on_train_start(self, loop: Loop) -> None:
        if not self.resume:
            return
        if self.run.status().get("resumable") is False:
            from danlu.errors import RunError

            raise RunError(f"{self.run.path.name} was trained without resumable checkpoints (a search trial: a "
                           "killed trial is marked failed and the search goes on)",
                           hint="run the search again to finish it, or train the trial's recipe.yaml anew")
        state = self.run.load_state(loop.model, loop.optimizer, loop.scheduler, loop.generator)
        loop.epoch = state["epoch"]
        # the rows up to the checkpoint's epoch: metrics.jsonl may hold one more, logged before a kill
        loop.history = list(state["history"]) if "history" in state else self.run.history()[:loop.epoch]
        if len(loop.history) != loop.epoch:
            from danlu.errors import RunError

            raise RunError(f"{self.run.metrics_path} has {len(loop.history)} epochs, the checkpoint {loop.epoch}",
                           hint="it cannot be resumed; start the run again with danlu train")
        self.best_value, self.best, self.best_epoch = state["best_value"], state["best"], state["best_epoch"]
        saved = state.get("callbacks") or {"EarlyStopping": state}  # 0.1.0 checkpoints kept them flat
        for cb in loop.callbacks:
            if hasattr(cb, "load_state_dict") and type(cb).__name__ in saved:
                cb.load_state_dict(saved[type(cb).__name__])
        if state.get("stopped"):
            loop.stop = Stop(state.get("stop_reason", "stopped"), state.get("stop_status", "done"))
        self.run.rewrite_metrics(loop.history)

    def on_epoch_end(self, loop: Loop, metrics: dict[str, float]) -> None:
        self.run.append_metrics(metrics)
        value = metrics.get(self.monitor)
        if value is None or not math.isfinite(value):
            value = metrics["train_loss"]
        if self.best_value is None or (value > self.best_value if higher_is_better(self.monitor)
                                       else value < self.best_value):
            self.best_value, self.best, self.best_epoch = value, dict(metrics), loop.epoch
            self.run.save_model(loop.model, {"epoch": loop.epoch, self.monitor: value})
        stop = loop.stop
        states = {type(cb).__name__: cb.state_dict() for cb in loop.callbacks
                  if cb is not self and hasattr(cb, "state_dict")}
        # the history stays in metrics.jsonl (written above, before this): dumping it into every checkpoint
        # grew with the epochs (digits-mlp, 40 epochs: 0.35 s of checkpoint writes, now ~0.1 s)
        info = {"epoch": loop.epoch, "best_value": self.best_value, "best": self.best,
                "best_epoch": self.best_epoch, "monitor": self.monitor, "stopped": stop is not None,
                "stop_reason": stop.reason if stop else None, "stop_status": stop.status if stop else None,
                "callbacks": states}
        if self.resumable:  # ~5 ms an epoch for digits-mlp: most of a search trial's overhead
            self.run.save_state(loop.model, loop.optimizer, loop.scheduler, loop.generator, info)
        self.run.set_status("training", epoch=loop.epoch, epochs=loop.epochs,
                            **({} if self.resumable else {"resumable": False}))
