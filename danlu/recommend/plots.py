"""The two figures of a recommendation run: Recall@k against k, and how popular the recommended items are."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np


def _save(fig, path: Path) -> None:
    from danlu.plots import pyplot
    from danlu.runs import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    atomic_write_bytes(path, buf.getvalue())


def recall_curve(curves: dict[str, list[float]], path: Path) -> None:
    """Recall@k for k = 1..K, one line per model (popularity included)."""
    from danlu.plots import pyplot

    fig, ax = pyplot().subplots(figsize=(5.5, 3.8))
    for name, curve in curves.items():
        ax.plot(np.arange(1, len(curve) + 1), curve, label=name)
    ax.set_xlabel("k (top-k list length)")
    ax.set_ylabel("Recall@k (test)")
    ax.set_title("Recall@k over the full catalogue, known items masked")
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path)


def recommended_popularity(train_counts: np.ndarray, tops: dict[str, np.ndarray], path: Path) -> None:
    """Share of top-k slots per popularity decile of the catalogue (decile 1 = the 10 % most popular)."""
    from danlu.plots import pyplot

    order = np.argsort(-train_counts, kind="stable")
    decile = np.empty(len(order), dtype=np.int64)
    decile[order] = np.minimum(9, np.arange(len(order)) * 10 // max(1, len(order)))
    fig, ax = pyplot().subplots(figsize=(5.5, 3.8))
    width = 0.8 / max(1, len(tops))
    for j, (name, top) in enumerate(tops.items()):
        share = np.bincount(decile[top.ravel()], minlength=10) / max(1, top.size)
        ax.bar(np.arange(1, 11) + (j - (len(tops) - 1) / 2) * width, share, width=width, label=name)
    ax.set_xlabel("popularity decile of the recommended item (1 = top 10 % by training count)")
    ax.set_ylabel("share of top-k slots")
    ax.set_xticks(range(1, 11))
    ax.legend()
    _save(fig, path)
