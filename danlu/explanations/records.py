"""An explanation record as the outside sees it: JSON without arrays, and its one-line caption."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def public_row(rec: dict) -> dict:
    """A record without its arrays; tokens and features as [name, score] lists (JSON)."""
    row = {k: v for k, v in rec.items() if k not in ("map", "pixels", "spectrogram")}
    for key in ("tokens", "features"):
        if key in row:
            row[key] = [[n, s] for n, s in row[key]]
    return row


def caption(rec: dict) -> str:
    from danlu.explanations.fit import NAMES

    if "top" in rec:
        best = rec["top"][0]
        said = f"predicted {best['label']} {best['probability']:.2f}"
    else:
        said = "predicted " + ", ".join(f"{k}={v:.4g}" for k, v in rec["prediction"].items())
    tgt = rec["target"]
    value = tgt.get("probability", tgt.get("value"))
    return f"{said} · explaining {tgt['label']} ({value:.3g}) · {NAMES[rec['method']]}"


def _stem(name: Any) -> str:
    import re

    stem = Path(str(name)).stem if isinstance(name, str | Path) else str(name)
    return re.sub(r"[^\w.-]+", "_", stem)[:60] or "input"
