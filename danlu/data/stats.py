"""Normalization statistics of image training splits, computed the same way for every loader.

The in-memory and streaming loaders once sampled different images (the first 20,000 decoded vs the first
500 readable files), so ``data.loader=auto`` changed a run's normalization with the folder's size.
"""

from __future__ import annotations

import numpy as np

STATS_SAMPLES = 1024  # evenly spaced training images (decoding more slows streaming start-up for little)


def stats_sample(n: int, cap: int = STATS_SAMPLES) -> np.ndarray:
    """Indexes of the training images the statistics are computed from: all of them up to ``cap``, else
    ``cap`` evenly spaced ones (the split is shuffled and stratified already)."""
    if n <= cap:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, cap).round().astype(np.int64))


def channel_stats(x) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images [N, C, H, W], in [0, 1] units."""
    import torch

    sample = x.to(torch.float64) / 255.0
    mean = sample.mean(dim=(0, 2, 3))
    std = sample.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return [round(float(v), 6) for v in mean], [round(float(v), 6) for v in std]
