"""The one JSON printer of the CLI: a --json answer is one line of strict JSON (no NaN), non-ASCII kept."""

from __future__ import annotations

import json
from typing import Any


def print_json(obj: Any) -> None:
    print(json.dumps(obj, ensure_ascii=False, allow_nan=False))
