"""What a recommendation fit shares with the training loop's callers: per-epoch rows in metrics.jsonl and the
caller's callbacks (a search's ReportAndPrune), and the validation metrics they may name.

A closed-form fit (popularity, item-kNN, EASE) writes one row, as one epoch of one: a pruner never stops it
(there is nothing left to save). MF / two-tower write a row per epoch and can be pruned after any but the
last. A rating run shows its callbacks the running mean after each cross-validation fold (so a pruner can stop
it), and writes one row, the mean over all folds.
"""

from __future__ import annotations

from typing import Any

from danlu.errors import RecipeError, did_you_mean
from danlu.recipe import Recipe


def metric_names(recipe: Recipe) -> list[str]:
    """The validation metrics a recommendation run logs each epoch (what train.monitor and --metric name)."""
    from danlu.recommend.data import config_of

    cfg = config_of(recipe)
    if cfg.task == "rating":
        return ["val_rmse"]
    return [f"val_{m}@{k}" for k in cfg.k for m in ("recall", "ndcg", "hr")] + ["val_mrr"]


def monitor(recipe: Recipe, metric: str | None = None) -> str:
    """``metric``, else train.monitor, else val_recall@max(k) (val_rmse for ratings); checked against the
    names the run logs."""
    from danlu.recommend.data import config_of

    valid = metric_names(recipe)
    name = metric or recipe.train.monitor
    if name == "auto":
        name = "val_rmse" if config_of(recipe).task == "rating" else f"val_recall@{max(config_of(recipe).k)}"
    if name not in valid:
        what = f"--metric '{name}'" if metric else f"train.monitor '{name}'"
        raise RecipeError(f"unknown {what} for a recommendation run (its validation metrics are scored each "
                          "epoch)", hint=f"{did_you_mean(name, valid)}one of: {', '.join(valid)}")
    return name


class EpochHooks:
    """Appends each epoch's row to the run's metrics.jsonl and runs the callbacks' ``on_epoch_end`` and
    ``should_stop`` with itself as the loop: ``epoch``, ``epochs``, ``stop`` and ``run`` are what they read."""

    def __init__(self, run: Any, callbacks: list[Any], epochs: int):
        self.run, self.callbacks, self.epochs = run, list(callbacks), epochs
        self.epoch, self.stop = 0, None

    def __call__(self, row: dict[str, Any], log: bool = True) -> bool:
        """True when a callback stops the fit (``self.stop`` says why); ``log=False`` keeps the row out of
        metrics.jsonl (a rating run's running mean over folds: only the mean over all folds is its score)."""
        self.epoch = int(row["epoch"])
        if log:
            self.run.append_metrics(row)
        metrics = {k: v for k, v in row.items() if isinstance(v, int | float) and k != "epoch"}
        for cb in self.callbacks:
            cb.on_epoch_end(self, metrics)
        for cb in self.callbacks:
            stop = cb.should_stop(self)
            if stop is not None:
                self.stop = stop
                return True
        return False
