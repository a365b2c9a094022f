"""PNG figures for a run: learning curves, confusion matrix, and a grid of test predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from danlu.printable import terminal_safe


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (imported on first use: ~0.7 s)."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["text.parse_math"] = False  # class names are plain text: "$5 bill" is no formula
    from danlu.plots.fonts import use_cjk_font

    use_cjk_font(matplotlib)  # Chinese class names drawn, not boxes
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path, tight: bool = True) -> None:
    """PNG, written atomically. ``tight`` crops to the drawn content, at the price of a second layout pass."""
    import io

    from danlu.runs.files import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight" if tight else None)
    pyplot().close(fig)
    atomic_write_bytes(path, buf.getvalue())


def learning_curves(history: list[dict], path: Path) -> None:
    """Loss and the main metric per epoch, train beside validation."""
    plt = pyplot()
    epochs = [h["epoch"] for h in history]
    metric = next((m for m in ("accuracy", "r2", "mae") if f"val_{m}" in history[0]), None) if history else None
    fig, axes = plt.subplots(1, 2 if metric else 1, figsize=(10 if metric else 5, 3.6), squeeze=False)
    ax = axes[0][0]
    ax.plot(epochs, [h["train_loss"] for h in history], "o-", label="train")
    if "val_loss" in history[0]:
        ax.plot(epochs, [h["val_loss"] for h in history], "o-", label="validation")
    ax.set(xlabel="epoch", ylabel="loss", title="loss")
    ax.legend()
    if metric:
        ax = axes[0][1]
        if f"train_{metric}" in history[0]:
            ax.plot(epochs, [h[f"train_{metric}"] for h in history], "o-", label="train")
        ax.plot(epochs, [h[f"val_{metric}"] for h in history], "o-", label="validation")
        ax.set(xlabel="epoch", ylabel=metric, title=metric)
        ax.legend()
    for a in axes[0]:
        a.grid(alpha=0.3)
    # fixed margins (the labels are known) instead of a tight bounding box: 0.22 s to draw, not 0.33 s
    fig.subplots_adjust(left=0.08 if metric else 0.15, right=0.98, bottom=0.14, top=0.91, wspace=0.22)
    save_figure(fig, path, tight=False)


def confusion_matrix(cm: list[list[int]], classes: list[str], path: Path) -> None:
    plt = pyplot()
    cm_a = np.asarray(cm)
    n = len(classes)
    names = [terminal_safe(c)[:14] for c in classes]  # no control characters (missing glyphs) in tick labels
    size = min(12, 2.5 + 0.45 * n)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    row = cm_a.sum(1, keepdims=True).clip(min=1)
    ax.imshow(cm_a / row, cmap="Blues", vmin=0, vmax=1)
    longest = max((len(c) for c in names), default=1) if n <= 30 else 2
    if n <= 30:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(cm_a[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if cm_a[i, j] / row[i, 0] > 0.5 else "black")
        ax.set_xticks(range(n), names, rotation=45, ha="right")
        ax.set_yticks(range(n), names)
    ax.set(xlabel="predicted", ylabel="true")
    ax.set_title("confusion matrix\n(counts; colour = row share)", fontsize=10)
    # margins in inches from the longest tick label (~0.085 in a character at 10 pt), not a tight bounding
    # box: that costs a second layout pass (a 10-class matrix drew in 0.45 s, now ~0.3 s)
    w, h = size, size * 0.9
    left, bottom = 0.55 + 0.085 * longest, 0.55 + 0.065 * longest
    fig.subplots_adjust(left=min(0.45, left / w), right=1 - 0.15 / w, bottom=min(0.45, bottom / h),
                        top=1 - 0.55 / h)
    save_figure(fig, path, tight=False)


def prediction_grid(images: np.ndarray, true: list[str], pred: list[str], path: Path) -> None:
    """Article 1's figure: 5×5 test images titled predicted/true, mistakes in red.

    Drawn as one mosaic in a single axes: 25 separate subplots took 2.2 s to render here, this ~0.2 s.
    """
    plt = pyplot()
    n = min(25, len(images))
    c, h, w = images.shape[1:]
    pad_h, pad_w = h // 3 + 2, 2  # room for the title above each tile
    mosaic = np.full((5 * (h + pad_h), 5 * (w + pad_w), c), 255, np.uint8)
    for k in range(n):
        r, q = divmod(k, 5)
        y0, x0 = r * (h + pad_h) + pad_h, q * (w + pad_w)
        mosaic[y0:y0 + h, x0:x0 + w] = np.transpose(images[k], (1, 2, 0))
    fig, ax = plt.subplots(figsize=(7.5, 8.2))
    ax.imshow(mosaic[..., 0] if c == 1 else mosaic, cmap="gray" if c == 1 else None, vmin=0, vmax=255,
              interpolation="nearest")
    for k in range(n):
        r, q = divmod(k, 5)
        wrong = true[k] != pred[k]
        shown = f"{terminal_safe(pred[k])[:10]} / {terminal_safe(true[k])[:10]}"
        ax.text(q * (w + pad_w) + w / 2, r * (h + pad_h) + pad_h - 1, shown,
                ha="center", va="bottom", fontsize=8, color="red" if wrong else "black",
                fontweight="bold" if wrong else "normal")
    ax.axis("off")
    ax.set_title("predicted / true (mistakes in red)")
    save_figure(fig, path)
