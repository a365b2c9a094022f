"""One table cell: a number as spreadsheets write it, a missing value, and rows as columns by name.

Shared by the one-hot encoder (tabular.py), the column plan (columns.py) and the table checks.
"""

from __future__ import annotations

import math
import re
from typing import Any

from danlu.data.labels import MISSING
from danlu.errors import DataError

# 1,234,567.89: grouped thousands, as spreadsheets export them
_GROUPED = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d*)?$")


def to_float(v: Any) -> float | None:
    """The cell as a float (NaN when missing), or None when it is not a number."""
    if v is None:
        return math.nan
    if isinstance(v, int | float) and not isinstance(v, bool):
        return float(v)
    s = str(v).strip()
    if s.lower() in MISSING:
        return math.nan
    try:
        return float(s)
    except ValueError:
        return float(s.replace(",", "")) if _GROUPED.match(s) else None



def is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or str(v).strip().lower() in MISSING


def rows_by_name(features: list[str], rows: list[Any], where: str = "input") -> dict[str, list[Any]]:
    """Rows as lists (in ``features`` order) or dicts (by column name) → columns by name."""
    cols: dict[str, list[Any]] = {n: [] for n in features}
    for i, row in enumerate(rows):
        if isinstance(row, dict):
            missing = [n for n in features if n not in row]
            if missing:
                raise DataError(f"{where} {i}: missing column(s) {', '.join(missing)}",
                                hint=f"expected columns: {', '.join(features)}")
            for n in features:
                cols[n].append(row[n])
        else:
            row = list(row)
            if len(row) != len(features):
                raise DataError(f"{where} {i}: {len(row)} values, the model expects {len(features)}",
                                hint=f"columns in order: {', '.join(features)}")
            for n, v in zip(features, row, strict=True):
                cols[n].append(v)
    return cols
