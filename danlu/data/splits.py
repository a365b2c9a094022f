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
