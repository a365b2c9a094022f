"""How missing values and class labels are spelled, shared by the tabular and text readers."""

from __future__ import annotations

import math

# cells that mean "no value" (compared lower-cased, stripped)
MISSING = {"", "na", "nan", "null", "none", "?", "n/a", "#n/a", "n.a.", "-", "--", "missing"}


# labels that mean "no label": fewer than for cells, since "none", "-" or "missing" can be real classes
# (an intent classifier's "none")
MISSING_LABELS = {"", "na", "nan", "null", "n/a", "#n/a", "?"}


def is_missing_label(value: str) -> bool:
    return value.strip().lower() in MISSING_LABELS


def canonical_label(label: str) -> str:
    """One spelling per class: integral numbers lose their decimals ("1.0", "1" and "01" are class "1"),
    as happens when pandas writes an integer label column that had a missing value as floats."""
    try:
        number = float(label)
    except ValueError:
        return label
    if math.isfinite(number) and number.is_integer() and abs(number) < 2**53:
        return str(int(number))
    return label
