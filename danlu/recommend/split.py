"""Hold-out protocols for interactions: who sees what at training time, and what is kept for scoring.

The temporal split is per user: each user's interactions in time order, the last ``test_fraction`` are
test, the ``val_fraction`` before them validation, the rest training. So no user's later interaction is in
training while an earlier one is held out. The random split ignores time: its report says it leaks the
future. Users with too few interactions to split stay whole in training (counted in the notes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from danlu.data.interactions import Interactions
from danlu.errors import DataError

PROTOCOL_TEXT = {
    "temporal": "per-user temporal hold-out: each user's last {test:.0%} of interactions (by time) are test, "
                "the {val:.0%} before them validation, the earlier ones training",
    "leave_last_one_out": "leave-last-one-out: each user's last interaction is test, the one before it "
                          "validation, the earlier ones training",
    "random": "random hold-out: {test:.0%} test and {val:.0%} validation drawn per user at random, ignoring time. "
              "WARNING: this leaks the future (training holds interactions made after test ones), so its "
              "numbers read higher than what a deployed model would see",
}


@dataclass
class Split:
    """Row indices into the (filtered) interaction arrays, per part."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    protocol: str
    description: str
    notes: list[str] = field(default_factory=list)


def positives(data: Interactions, threshold: float | None) -> np.ndarray:
    """Rows that count as implicit positives: all, or those rated at least ``threshold``."""
    if threshold is None:
        return np.arange(len(data))
    if data.ratings is None:
        raise DataError(f"recommend.implicit asks for rating >= {threshold:g}, but {data.source} has no ratings",
                        hint="set recommend.implicit=all, or name the rating column: recommend.rating_column=...")
    return np.flatnonzero(data.ratings >= threshold)


def split_interactions(users: np.ndarray, times: np.ndarray | None, protocol: str, test_fraction: float,
                       val_fraction: float, seed: int = 0) -> Split:
    """Split rows per user by ``protocol`` (temporal, leave_last_one_out, random)."""
    n = len(users)
    if protocol != "random" and times is None:
        raise DataError(f"the {protocol} split orders each user's interactions by time, but the data has no "
                        "timestamps", hint="name the time column (recommend.time_column=...), or use "
                                           "recommend.split=random (which the report marks as leaking the future)")
    rng = np.random.default_rng(seed)
    if protocol == "random":
        key = rng.random(n)
    else:
        key = times.astype(np.float64)
    # group by user, order within a user by (time, table order): lexsort's last key is the primary one
    order = np.lexsort((np.arange(n), key, users))
    part = np.zeros(n, dtype=np.int8)  # 0 train, 1 val, 2 test
    bounds = np.flatnonzero(np.diff(users[order])) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [n]])
    kept_whole = 0
    for s, e in zip(starts, ends, strict=True):
        size = e - s
        if protocol == "leave_last_one_out":
            n_test, n_val = 1, 1 if val_fraction > 0 else 0
        else:
            n_test = max(1, math.floor(size * test_fraction + 0.5))
            n_val = max(1, math.floor(size * val_fraction + 0.5)) if val_fraction > 0 else 0
        if size - n_test - n_val < 1:
            if size >= 2:
                n_test, n_val = 1, 0
            else:
                kept_whole += 1
                continue
        rows = order[s:e]
        part[rows[size - n_test:]] = 2
        if n_val:
            part[rows[size - n_test - n_val:size - n_test]] = 1
    notes = []
    if kept_whole:
        notes.append(f"{kept_whole} user(s) with a single interaction stay whole in training (nothing to hold out)")
    desc = PROTOCOL_TEXT[protocol].format(test=test_fraction, val=val_fraction)
    return Split(np.flatnonzero(part == 0), np.flatnonzero(part == 1), np.flatnonzero(part == 2), protocol, desc,
                 notes)
