"""Checks that tell a useful explanation from a pretty one (used by tests and benchmarks/explain.py).

- model randomization (Adebayo et al. 2018): a trained model's maps and those of the same architecture
  with fresh weights must rank pixels differently (low Spearman correlation);
- deletion / insertion (Petsiuk et al. 2018, RISE): removing the most-attributed pixels first must make
  the class probability fall faster than removing random ones, inserting them first must make it rise faster.
"""

from __future__ import annotations

import numpy as np
import torch


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation of two maps (ties share their mean rank); 0 when either is constant."""
    from scipy.stats import rankdata

    ra, rb = rankdata(a.ravel()), rankdata(b.ravel())
    sa, sb = ra.std(), rb.std()
    if sa == 0 or sb == 0:
        return 0.0
    return float(((ra - ra.mean()) * (rb - rb.mean())).mean() / (sa * sb))


def mean_spearman(maps_a: torch.Tensor, maps_b: torch.Tensor) -> float:
    return float(np.mean([spearman(a.numpy(), b.numpy()) for a, b in zip(maps_a, maps_b, strict=True)]))


@torch.no_grad()
def deletion_insertion(model: torch.nn.Module, x: torch.Tensor, targets: torch.Tensor, maps: torch.Tensor,
                       baseline: torch.Tensor, steps: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """(deletion AUC [N], insertion AUC [N]) of the target's probability as pixels are moved between the
    image and the baseline in the maps' order, most attributed first (all channels of a pixel at once).
    The AUC is the mean of the curve over ``steps + 1`` points from 0 to all pixels."""
    n, c, h, w = x.shape
    order = maps.reshape(n, -1).argsort(dim=1, descending=True)
    base = baseline.expand_as(x).reshape(n, c, -1)
    flat = x.reshape(n, c, -1)
    counts = [round(k * h * w / steps) for k in range(steps + 1)]
    rows = torch.arange(n)[:, None]
    deletion, insertion = [], []
    for k in counts:
        moved = torch.zeros(n, h * w, dtype=torch.bool)
        moved[rows, order[:, :k]] = True
        m = moved[:, None, :]
        deleted = torch.where(m, base, flat).reshape_as(x)
        inserted = torch.where(m, flat, base).reshape_as(x)
        for batch, out in ((deleted, deletion), (inserted, insertion)):
            probs = torch.softmax(model(batch).float(), dim=1)
            out.append(probs[torch.arange(n), targets].numpy())
    return np.stack(deletion, 1).mean(1), np.stack(insertion, 1).mean(1)


def random_maps(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))
