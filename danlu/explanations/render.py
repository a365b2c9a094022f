"""Pictures of explanations: heat maps over images, feature bars, the top-losses grid.

matplotlib's object API (Figure + Agg canvas), never pyplot: no GUI backend, no global state, safe in
the server's threads.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

MAX_BARS = 20  # a wider table shows its 20 strongest columns


def display_map(attr: np.ndarray, method: str) -> np.ndarray:
    """[H, W] in [0, 1] for drawing: (Guided) Grad-CAM's positive part (its convention), the magnitude of the
    others."""
    m = np.maximum(attr, 0) if method in ("gradcam", "guided_gradcam") else np.abs(attr)
    top = float(m.max()) if m.size else 0.0
    return m / top if top > 0 else np.zeros_like(m)


def _as_rgb(pixels: np.ndarray) -> np.ndarray:
    """uint8 [C, H, W] → float [H, W, 3] in [0, 1]."""
    img = pixels.transpose(1, 2, 0).astype(np.float32) / 255.0
    return np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img[:, :, :3]


def overlay(pixels: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The image with the heat map (0..1, 'jet' colours) laid over it, uint8 [H, W, 3]."""
    from matplotlib import colormaps

    colours = colormaps["jet"](heat)[:, :, :3]
    weight = alpha * heat[:, :, None] ** 0.5  # cold regions let the image show through
    mixed = _as_rgb(pixels) * (1 - weight) + colours * weight
    return (np.clip(mixed, 0, 1) * 255).astype(np.uint8)


def overlay_png(pixels: np.ndarray, heat: np.ndarray, min_side: int = 224) -> bytes:
    """The overlay alone as PNG bytes, scaled up (nearest) so an 8 or 28 px image is visible."""
    from PIL import Image

    img = Image.fromarray(overlay(pixels, heat))
    scale = max(1, -(-min_side // max(1, min(img.size))))
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _save(fig, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from danlu.runs.files import atomic_write_bytes

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    atomic_write_bytes(path, buf.getvalue())


def image_figure(pixels: np.ndarray, heat: np.ndarray, title: str, path: Path) -> None:
    """Two panels: the image, and the heat map over it; the title names prediction, target, method."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.6))
    for i, img in enumerate((_as_rgb(pixels), overlay(pixels, heat))):
        ax = fig.add_subplot(1, 2, i + 1)
        ax.imshow(img, interpolation="nearest")
        ax.set_axis_off()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    _save(fig, path)


def bars_figure(names: list[str], values: list[float], title: str, path: Path) -> None:
    """Horizontal bars, the strongest columns on top; green pushes toward the target, red away."""
    from matplotlib.figure import Figure

    order = np.argsort(-np.abs(np.asarray(values)))[:MAX_BARS][::-1]
    shown = [str(names[i])[:40] for i in order]
    vals = [float(values[i]) for i in order]
    fig = Figure(figsize=(7, 0.35 * len(shown) + 1.2))
    ax = fig.add_subplot(1, 1, 1)
    ax.barh(range(len(shown)), vals, color=["#2a9d4b" if v >= 0 else "#d1495b" for v in vals])
    ax.set_yticks(range(len(shown)), shown, fontsize=8)
    ax.axvline(0, color="black", linewidth=0.6)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    _save(fig, path)


def grid_figure(cells: list[tuple[np.ndarray, np.ndarray, str]], path: Path) -> None:
    """The top-losses view: each cell an image with its heat map and a caption."""
    from matplotlib.figure import Figure

    cols = min(4, len(cells))
    rows = -(-len(cells) // cols)
    fig = Figure(figsize=(3 * cols, 3.2 * rows))
    for i, (pixels, heat, caption) in enumerate(cells):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(overlay(pixels, heat), interpolation="nearest")
        ax.set_title(caption, fontsize=8)
        ax.set_axis_off()
    fig.tight_layout()
    _save(fig, path)


def bars_grid_figure(cells: list[tuple[list[str], list[float], str]], path: Path) -> None:
    """Top losses of a table model: one small bar chart per row (its 8 strongest columns)."""
    from matplotlib.figure import Figure

    cols = min(4, len(cells))
    rows = -(-len(cells) // cols)
    fig = Figure(figsize=(3.6 * cols, 2.8 * rows))
    for i, (names, values, caption) in enumerate(cells):
        ax = fig.add_subplot(rows, cols, i + 1)
        order = np.argsort(-np.abs(np.asarray(values)))[:8][::-1]
        vals = [float(values[j]) for j in order]
        ax.barh(range(len(order)), vals, color=["#2a9d4b" if v >= 0 else "#d1495b" for v in vals])
        ax.set_yticks(range(len(order)), [str(names[j])[:18] for j in order], fontsize=6)
        ax.set_title(caption, fontsize=7)
    fig.tight_layout()
    _save(fig, path)


def text_html(rows: list[tuple[str, str]], title: str) -> str:
    """A standalone page: per text a caption and its coloured tokens (spans from danlu.explanations.text)."""
    from html import escape

    body = "\n".join(f"<div class=row><div class=cap>{escape(cap)}</div><div class=toks>{spans}</div></div>"
                     for cap, spans in rows)
    return ("<!doctype html><meta charset=utf-8><title>" + escape(title) + "</title>"
            "<style>body{font:15px/1.7 sans-serif;max-width:60em;margin:2em auto}"
            ".row{margin:1em 0}.cap{color:#555;font-size:13px}.toks span{padding:1px 0}</style>"
            f"<h1>{escape(title)}</h1>\n{body}\n")
