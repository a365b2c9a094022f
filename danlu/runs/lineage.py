"""lineage.json: where a derived run (pruned, distilled) came from. A run-folder file, so training's
distillation and compress's pruning write it alike; compress/lineage.py describes it for people."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from danlu.runs.files import read_json, write_json

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
