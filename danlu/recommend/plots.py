"""The two figures of a recommendation run: Recall@k against k, and how popular the recommended items are."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _save(fig, path: Path) -> None:
    from danlu.plots.figures import save_figure

    save_figure(fig, path)


def recall_curve(curves: dict[str, list[float]], path: Path) -> None:
    """Recall@k for k = 1..K, one line per model (popularity included)."""
    from danlu.plots.figures import pyplot

    fig, ax = pyplot().subplots(figsize=(5.5, 3.8))
    for name, curve in curves.items():
        ax.plot(np.arange(1, len(curve) + 1), curve, label=name)
    ax.set_xlabel("k (top-k list length)")
    ax.set_ylabel("Recall@k (test)")
    ax.set_title("Recall@k over the full catalogue, known items masked")
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path)


BANDS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)  # popularity-rank bands, as fractions of the catalogue


def recommended_popularity(train_counts: np.ndarray, tops: dict[str, np.ndarray], path: Path) -> None:
    """Share of top-k slots per popularity band of the catalogue (top 1 %, 1-2 %, ..., 50-100 %)."""
    from danlu.plots.figures import pyplot

    order = np.argsort(-train_counts, kind="stable")
    rank = np.empty(len(order), dtype=np.float64)
    rank[order] = (np.arange(len(order)) + 0.5) / max(1, len(order))
    band = np.searchsorted(np.asarray(BANDS), rank)
    labels = [f"{lo:.0%}-{hi:.0%}" for lo, hi in zip((0.0, *BANDS[:-1]), BANDS, strict=True)]
    fig, ax = pyplot().subplots(figsize=(6, 3.8))
    width = 0.8 / max(1, len(tops))
    for j, (name, top) in enumerate(tops.items()):
        share = np.bincount(band[top.ravel()], minlength=len(BANDS)) / max(1, top.size)
        ax.bar(np.arange(len(BANDS)) + (j - (len(tops) - 1) / 2) * width, share, width=width, label=name)
    ax.set_xlabel("popularity band of the recommended item (by training count, most popular first)")
    ax.set_ylabel("share of top-k slots")
    ax.set_xticks(range(len(BANDS)), labels)
    ax.legend()
    _save(fig, path)
