"""A weighted ensemble of trained candidate runs on the same table, fit on the validation split.

Caruana et al.'s ensemble selection (2004), as AutoGluon uses it: start empty, add (with replacement) the
member whose addition lowers the validation loss of the averaged prediction most, a fixed number of times;
the weights are how often each member was picked. Members are scored on the same rows: every candidate
carves its splits with the same seed and fractions, which ``member_outputs`` checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROUNDS = 25


@dataclass
class Outputs:
    """One member's predictions: class probabilities (classification) or values (regression)."""

    val: np.ndarray
    test: np.ndarray
    y_val: np.ndarray
    y_test: np.ndarray


def member_outputs(run: str | Path, data_dir: Path | None = None) -> tuple[Outputs, str]:
    """Predictions of a run's best weights on its val and test splits, and the task."""
    from danlu.inference import make_loader, predict, select_device
    from danlu.prepare import load_run, prepare
    from danlu.runs.folder import RunFolder

    run_dir, recipe, _ = load_run(run)
    splits, schema, model = prepare(recipe, data_dir, for_inference=True)
    RunFolder(run_dir).load_model(model)
    device = select_device("cpu")
    got = {}
    for name in ("val", "test"):
        loader = make_loader(getattr(splits, name), schema, recipe, train=False, generator=None, device=device,
                             channels_last=False)
        _, preds, y = predict(model, loader, schema)  # probabilities, or values in the target's units
        got[name] = (preds.reshape(len(preds), -1).double().numpy(), y.numpy())
    return Outputs(got["val"][0], got["test"][0], got["val"][1], got["test"][1]), schema.task


def _loss(pred: np.ndarray, y: np.ndarray, task: str) -> float:
    if task == "classification":
        return float(-np.mean(np.log(np.clip(pred[np.arange(len(y)), y.astype(int)], 1e-12, None))))
    return float(np.mean((pred.reshape(len(y), -1) - y.reshape(len(y), -1)) ** 2))


def metric(pred: np.ndarray, y: np.ndarray, task: str) -> float:
    """Accuracy, or R² (the leaderboard's metrics)."""
    if task == "classification":
        return float(np.mean(pred.argmax(1) == y.astype(int)))
    y = y.reshape(len(y), -1).astype(np.float64)
    pred = pred.reshape(len(y), -1)
    ss_res = float(((y - pred) ** 2).sum())
    ss_tot = float(((y - y.mean(0)) ** 2).sum())
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else 0.0


def select(members: dict[str, Outputs], task: str, rounds: int = ROUNDS) -> dict[str, float]:
    """Member name → weight (summing to 1) by greedy selection with replacement on validation loss."""
    names = list(members)
    first = members[names[0]]
    for name in names[1:]:
        if not (np.array_equal(members[name].y_val, first.y_val) and np.array_equal(members[name].y_test,
                                                                                     first.y_test)):
            raise ValueError(f"candidate {name} was scored on other rows than {names[0]}")
    counts = dict.fromkeys(names, 0)
    total = np.zeros_like(first.val)
    for k in range(1, rounds + 1):
        best = min(names, key=lambda n: _loss((total + members[n].val) / k, first.y_val, task))
        counts[best] += 1
        total = total + members[best].val
    return {n: c / rounds for n, c in counts.items() if c}


def blend(members: dict[str, Outputs], weights: dict[str, float], split: str) -> np.ndarray:
    return sum(w * getattr(members[n], split) for n, w in weights.items())


def ensemble_entry(runs: dict[str, str], data_dir: Path | None = None) -> dict[str, Any] | None:
    """{'weights', 'val', 'test'} of the weighted ensemble of ``runs`` (name → run folder), or None when the
    selection keeps a single member (the ensemble is then that member)."""
    outs, task = {}, "classification"
    for name, run in runs.items():
        outs[name], task = member_outputs(run, data_dir)
    weights = select(outs, task)
    if len(weights) < 2:
        return None
    first = next(iter(outs.values()))
    return {"weights": weights, "val": metric(blend(outs, weights, "val"), first.y_val, task),
            "test": metric(blend(outs, weights, "test"), first.y_test, task)}
