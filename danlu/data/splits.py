"""Train/val/test splits: seeded, stratified for classification, and the container the loaders use."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Splits:
    train: Any  # TensorSplit or StreamSplit
    val: Any
    test: Any
    notes: list[str] = field(default_factory=list)  # what was skipped, truncated or carved, for the user
    # files the run folder must carry to preprocess new inputs (vocab.json, tokenizer/): name → writer(run_dir)
    artifacts: dict[str, Callable[[Path], None]] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)  # loader facts for `danlu data describe`
    # inputs without labels a model may measure before training (a test voice's clips: data.adapt), never
    # trained on; None = none
    unlabelled: Any = None

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def split_off(y: np.ndarray, fraction: float, seed: int, stratify: bool) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, taken) with ``fraction`` of the rows taken; per class when ``stratify``.

    Every class with at least two rows keeps one row on each side, so a small class never vanishes
    from training.
    """
    n = len(y)
    rng = np.random.default_rng(seed)
    if fraction <= 0 or n < 2:
        return np.arange(n), np.arange(0)
    if not stratify:
        perm = rng.permutation(n)
        k = min(max(1, round(n * fraction)), n - 1)
        return np.sort(perm[k:]), np.sort(perm[:k])
    taken = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        idx = idx[rng.permutation(len(idx))]
        k = round(len(idx) * fraction)
        if len(idx) >= 2:
            k = min(max(k, 1), len(idx) - 1)
        else:
            k = 0
        taken.append(idx[:k])
    taken_idx = np.sort(np.concatenate(taken)) if taken else np.arange(0)
    mask = np.ones(n, bool)
    mask[taken_idx] = False
    return np.flatnonzero(mask), taken_idx


def subsample(y: np.ndarray, limit: int, seed: int, stratify: bool) -> np.ndarray:
    """Indices of at most ``limit`` rows, class proportions kept when ``stratify``."""
    if limit >= len(y):
        return np.arange(len(y))
    _, taken = split_off(y, limit / len(y), seed, stratify)
    return taken[:limit]


def _take(part: tuple, idx: np.ndarray) -> tuple:
    """Rows ``idx`` of every column of a part (numpy arrays are indexed, lists picked, None kept)."""
    return tuple(None if c is None else c[idx] if isinstance(c, np.ndarray) else [c[i] for i in idx] for c in part)


def carve_splits(parts: dict[str, tuple], *, val_fraction: float, test_fraction: float, limit_train: int | None,
                 seed: int, label_index: int = 1, stratify: bool = True,
                 notes: list[str] | None = None) -> dict[str, tuple]:
    """Complete a source's own splits to train/val/test, the same way for every data family.

    Each part is a tuple of row-aligned columns, labels at ``label_index``. A single "all" part becomes
    train; with train and val but no test, val is the test split and validation is carved from train;
    otherwise test and then val are carved (seeded, stratified). ``limit_train`` caps train last.
    """
    parts = dict(parts)
    if "train" not in parts and "all" in parts:
        parts["train"] = parts.pop("all")
    if "test" not in parts:
        if "val" in parts:
            parts["test"] = parts.pop("val")
            if notes is not None:
                notes.append("no test split: val is the test split; validation is carved from train")
        else:
            keep, take = split_off(np.asarray(parts["train"][label_index]), test_fraction, seed, stratify)
            parts["train"], parts["test"] = _take(parts["train"], keep), _take(parts["train"], take)
    if "val" not in parts:
        keep, take = split_off(np.asarray(parts["train"][label_index]), val_fraction, seed + 1, stratify)
        parts["train"], parts["val"] = _take(parts["train"], keep), _take(parts["train"], take)
    if limit_train:
        keep = subsample(np.asarray(parts["train"][label_index]), limit_train, seed, stratify)
        parts["train"] = _take(parts["train"], keep)
    return parts
