"""Where a compressed or distilled run came from: ``lineage.json`` in its folder (source run, that run's
weights digest, the method and its settings), shown by ``danlu runs show``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from danlu.runs import read_json, write_json

LINEAGE = "lineage.json"


def write_lineage(run_dir: Path, info: dict[str, Any]) -> None:
    write_json(Path(run_dir) / LINEAGE, info)


def read_lineage(run_dir: Path) -> dict[str, Any] | None:
    """lineage.json, or None for a run trained from scratch."""
    path = Path(run_dir) / LINEAGE
    if not path.is_file():
        return None
    data = read_json(path)
    return data if isinstance(data, dict) else {"damaged": f"{path} is not a JSON object"}


def describe(info: dict[str, Any]) -> str:
    """One line for ``danlu runs show``."""
    method = info.get("method", "?")
    if method == "prune":
        return (f"pruned {100 * info.get('fraction', 0):.0f} % of {info.get('model', 'the model')}'s channels/units "
                f"from {info.get('source')} (weights sha256 {str(info.get('source_weights_sha256', ''))[:12]}), "
                f"fine-tuned {info.get('finetune_epochs')} epoch(s); sizes {info.get('before')} → {info.get('after')}")
    if method == "distill":
        return (f"distilled from teacher {info.get('teacher')} (weights sha256 "
                f"{str(info.get('teacher_weights_sha256', ''))[:12]}), temperature {info.get('temperature')}, "
                f"alpha {info.get('alpha')}")
    return f"{method}: {info}"
