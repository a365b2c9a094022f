"""The federated run's own figure: global test accuracy (and loss) by round."""

from __future__ import annotations

from pathlib import Path


def accuracy_by_round(history: list[dict], path: Path, initial: dict | None = None) -> None:
    from danlu.plots.figures import pyplot, save_figure

    plt = pyplot()
    rows = ([{"round": 0, **initial}] if initial else []) + list(history)
    metric = "test_accuracy" if rows and "test_accuracy" in rows[-1] else "test_loss"
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot([r["round"] for r in rows], [r[metric] for r in rows], "o-")
    ax.set(xlabel="round", ylabel=metric.replace("_", " "), title=f"global model: {metric.replace('_', ' ')} by round")
    ax.grid(alpha=0.3)
    save_figure(fig, path)
