"""Tables that cannot teach anything, refused before any file is written: a target with one value, a target
that is an ID, and a feature column that leaks the target (equals it, or predicts it perfectly in training).

A leak is the classic silent failure: a column such as ``loan_status_code`` beside ``loan_status`` gives
100 % on validation and nothing in production. ``data.check_leaks=false`` turns the column check off for a
column that truly is that predictive.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from danlu.errors import DataError

MIN_ROWS_FOR_LEAKS = 30  # a column equal to the target, on fewer rows, can be chance
# a column that sorts the classes apart alone, on fewer training rows, can be chance (or a clean toy table)
MIN_ROWS_FOR_PERFECT = 200
MIN_ROWS_FOR_ID = 20


def _numbers(values: list[Any]) -> np.ndarray | None:
    """The column as floats (NaN for missing), or None when it is not numeric."""
    from danlu.data.cells import is_missing as _missing
    from danlu.data.cells import to_float as _to_float

    out = np.empty(len(values), np.float64)
    for i, v in enumerate(values):
        if _missing(v):
            out[i] = math.nan
            continue
        f = _to_float(v)
        if f is None:
            return None
        out[i] = f
    return out


def check_target(y_raw: list[Any], keep: list[int], task: str, target: str, source: str) -> None:
    """One value throughout, or one distinct value per row (an ID), is not something to predict."""
    values = [str(y_raw[i]).strip() for i in keep]
    distinct = set(values)
    if len(distinct) == 1:
        raise DataError(f"{source}: the target '{target}' has one value throughout ({values[0]!r}): there is "
                        "nothing to predict", hint="set data.target to the column to predict")
    n = len(values)
    if n < MIN_ROWS_FOR_ID or len(distinct) < n:
        return
    nums = _numbers(values)
    if nums is None:
        raise DataError(f"{source}: the target '{target}' looks like an ID: all {n} values are distinct text",
                        hint="set data.target to the column to predict (an ID names a row; it is not learnable)")
    if task == "classification" or (np.all(np.floor(nums) == nums) and
                                    np.ptp(nums) + 1 <= 1.1 * n):  # whole numbers, one per row, consecutive
        raise DataError(f"{source}: the target '{target}' looks like an ID: all {n} values are distinct "
                        + ("classes" if task == "classification" else "consecutive whole numbers"),
                        hint="set data.target to the column to predict; if it is a quantity, set "
                             "data.task=regression")


def leaking_column(name: str, values: list[Any], y: np.ndarray, task: str, train_rows: np.ndarray,
                   train_pos: np.ndarray) -> str | None:
    """Why column ``name`` leaks the target on the training rows, or None. ``train_rows`` index ``values``
    (file rows), ``train_pos`` index ``y`` (rows with a target)."""
    from danlu.data.cells import is_missing as _missing
    from danlu.data.columns import canonical

    if len(train_rows) < MIN_ROWS_FOR_LEAKS:
        return None
    col = [values[i] for i in train_rows]
    target = y[train_pos]
    nums = _numbers(col)
    if task == "regression":
        if nums is None:
            return None
        ok = ~np.isnan(nums)
        t = target.reshape(len(target), -1)[:, 0].astype(np.float64)
        if ok.sum() < MIN_ROWS_FOR_LEAKS or np.ptp(nums[ok]) == 0:
            return None
        if np.allclose(nums[ok], t[ok], rtol=1e-6, atol=1e-9):
            return "it equals the target"
        r = np.corrcoef(nums[ok], t[ok])[0, 1]
        if abs(r) > 0.99999:
            return f"it is a linear function of the target (correlation {r:+.6f})"
        if len(train_rows) < MIN_ROWS_FOR_PERFECT:
            return None
        order = np.argsort(t[ok], kind="stable")  # a monotone function of it (log wage beside wage)
        v, tt = nums[ok][order], t[ok][order]
        steps = np.diff(v)[np.diff(tt) > 0]
        if len(steps) and (np.all(steps > 0) or np.all(steps < 0)):
            return "it rises (or falls) with the target on every training row: a function of the target"
        return None
    classes = target.astype(np.int64)
    if nums is not None and np.array_equal(nums, classes.astype(np.float64)):
        return "it equals the target's class index"
    if len(train_rows) < MIN_ROWS_FOR_PERFECT:
        return None
    if nums is not None:  # a threshold (or a few) on the number sorts every class apart
        ok = ~np.isnan(nums)
        if ok.sum() < MIN_ROWS_FOR_LEAKS:
            return None
        order = np.argsort(nums[ok], kind="stable")
        v, c = nums[ok][order], classes[ok][order]
        # runs of one class along the sorted values; equal values of different classes break the purity
        changes = int(np.sum(c[1:] != c[:-1]))
        ties = bool(np.any((v[1:] == v[:-1]) & (c[1:] != c[:-1])))
        k = len(np.unique(c))
        if k > 1 and not ties and changes <= k - 1:
            return "its values sort the classes apart perfectly (a threshold on it alone gives 100 % accuracy)"
        return None
    present = [(canonical(v), cl) for v, cl in zip(col, classes, strict=True) if not _missing(v)]
    if len(present) < MIN_ROWS_FOR_LEAKS:
        return None
    seen: dict[str, int] = {}
    for v, cl in present:
        if seen.setdefault(v, cl) != cl:
            return None
    if len(seen) > max(2 * len(set(classes.tolist())), len(present) // 10):
        return None  # nearly one value per row: an ID (left out as such), not a leak
    return "each of its values goes with one class only (it gives 100 % accuracy alone)"


def check_leaks(columns: dict[str, list[Any]], y: np.ndarray, task: str, target: str, source: str,
                train_rows: np.ndarray, train_pos: np.ndarray, y_raw: list[Any]) -> None:
    """Every feature column against the target, on the training rows."""
    from danlu.data.columns import canonical

    if len(train_rows) < MIN_ROWS_FOR_LEAKS:
        return
    labels = [canonical(y_raw[r]) for r in train_rows]
    # with one feature, a target that is a function of it is the task (article 4 fits y = 2x), not a leak:
    # only a copy of the target is refused then
    alone = len(columns) == 1
    for name, values in columns.items():
        same = all(canonical(values[r]) == t for r, t in zip(train_rows, labels, strict=True))
        why = "it holds the target's own values" if same else None if alone else leaking_column(
            name, values, y, task, train_rows, train_pos)
        if why:
            raise DataError(f"{source}: column '{name}' leaks the target '{target}': {why} on the training rows",
                            hint=f"leave it out with data.exclude=[{name}]; if it truly is that predictive, set "
                                 "data.check_leaks=false")
