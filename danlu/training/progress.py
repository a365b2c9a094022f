"""Progress output: a rich bar on a terminal, plain per-epoch lines otherwise (CI, pipes)."""

from __future__ import annotations

import sys
import time
from typing import Any


def _fmt(metrics: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())


class Progress:
    """Reports training to stderr; stdout stays free for results (and --json)."""

    def __init__(self, epochs: int, steps_per_epoch: int, enabled: bool = True):
        self.epochs, self.steps = epochs, steps_per_epoch
        self.enabled = enabled
        self.live = enabled and sys.stderr.isatty()
        self._bar: Any = None
        self._task: Any = None
        self._t0 = time.perf_counter()

    def __enter__(self) -> Progress:
        if self.live:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(),
                                     MofNCompleteColumn(), TextColumn("{task.fields[stats]}"),
                                     TimeRemainingColumn(), transient=False)
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def start_epoch(self, epoch: int, steps: int | None = None) -> None:
        if self._bar is not None:
            if self._task is not None:
                self._bar.remove_task(self._task)
            self._task = self._bar.add_task("train", total=steps or self.steps, epoch=f"{epoch}/{self.epochs}",
                                            stats="")

    def step(self, loss: float, samples_per_s: float) -> None:
        if self._bar is not None:
            self._bar.update(self._task, advance=1, stats=f"loss {loss:.4f}  {samples_per_s:,.0f} samples/s")

    def end_epoch(self, epoch: int, metrics: dict[str, float], samples_per_s: float) -> None:
        line = f"epoch {epoch}/{self.epochs}  {_fmt(metrics)}  {samples_per_s:,.0f} samples/s"
        if self._bar is not None:
            self._bar.console.print(line)
        elif self.enabled:
            print(line, file=sys.stderr, flush=True)

    def note(self, text: str) -> None:
        import logging

        logging.getLogger("danlu.training.progress").info(text)  # for library users' logging; danlu.log explains
        if self.enabled:
            from danlu.printable import terminal_safe  # notes quote class and column names from the data

            print(terminal_safe(text), file=sys.stderr, flush=True)
