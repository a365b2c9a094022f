"""Prediction rows are answered only when every number in them is finite.

A regression model fed features of 1e37 overflows float32 and predicts inf (or NaN): answering that as
``"target": null`` with a 200 looks like a prediction. ``danlu predict`` and the server both refuse it here,
naming the input, so the caller learns that the input is outside what the model can take.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from danlu.errors import DataError


def finite_rows(rows: list[dict[str, Any]], names: Sequence[Any] | None = None) -> list[dict[str, Any]]:
    """The rows unchanged, or a DataError naming the first row (``names[i]``, else its "input") holding
    a non-finite number."""
    for i, row in enumerate(rows):
        if not _all_finite(row.get("prediction", row.get("top"))):
            where = names[i] if names is not None else row.get("input", f"input {i}")
            raise DataError(f"{where}: the model's output is not a finite number (it overflows float32)",
                            hint="the input is far outside the range the model was trained on: send values "
                                 "in that range")
    return rows


def _all_finite(obj: Any) -> bool:
    if isinstance(obj, float):
        return math.isfinite(obj)
    if isinstance(obj, dict):
        return all(_all_finite(v) for v in obj.values())
    if isinstance(obj, list):
        return all(_all_finite(v) for v in obj)
    return True
