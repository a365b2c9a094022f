"""Split a training set among K simulated clients: IID, label shards (pathological non-IID), or Dirichlet.

Seeded and deterministic, so a client on another process (a SuperNode) computes the same share as the
simulation would: its partition id names its share.
"""

from __future__ import annotations

import numpy as np

from danlu.errors import DanluError, DataError

SPLITS = ("iid", "shards", "dirichlet:ALPHA")
SHARDS_PER_CLIENT = 2  # McMahan et al. (2017): each client holds two label-sorted shards


def parse_split(text: str) -> tuple[str, float]:
    """("iid" | "shards" | "dirichlet", alpha); alpha only matters for dirichlet."""
    name, _, arg = str(text).partition(":")
    if name in ("iid", "shards") and not arg:
        return name, 0.0
    if name == "dirichlet":
        try:
            alpha = float(arg or "0.5")
        except ValueError:
            alpha = -1.0
        if not alpha > 0 or alpha == float("inf"):
            raise DanluError(f"--split {text}: the Dirichlet concentration must be a positive number",
                             hint="e.g. --split dirichlet:0.5 (smaller = more skewed label mixes)")
        return name, alpha
    from danlu.errors import unknown_name

    raise unknown_name("split", text, list(SPLITS))


def partition(labels: np.ndarray, clients: int, split: str = "iid", seed: int = 0) -> list[np.ndarray]:
    """Indices of each client's share (sorted). Every client gets at least one sample, or this refuses."""
    labels = np.asarray(labels).reshape(-1)
    n = len(labels)
    kind, alpha = parse_split(split)
    if clients < 1:
        raise DanluError(f"--clients {clients}: a federation needs at least one client", hint="e.g. --clients 10")
    if clients > n:
        raise DataError(f"--clients {clients} is more than the {n} training samples: some clients would hold nothing",
                        hint=f"use --clients {n} or fewer, or more data (data.limit_train, data fractions)")
    rng = np.random.default_rng(seed)
    if kind == "iid":
        parts = np.array_split(rng.permutation(n), clients)
    elif kind == "shards":
        shards = clients * SHARDS_PER_CLIENT
        if shards > n:
            raise DataError(f"--split shards cuts {n} samples into {shards} shards ({SHARDS_PER_CLIENT} per client): "
                            "fewer samples than shards", hint=f"use --clients {n // SHARDS_PER_CLIENT} or fewer")
        by_label = np.argsort(labels, kind="stable")  # label-sorted, so each shard holds one or two labels
        pieces = np.array_split(by_label, shards)
        order = rng.permutation(shards)
        parts = [np.concatenate([pieces[j] for j in order[i::clients]]) for i in range(clients)]
    else:
        parts = _dirichlet(labels, clients, alpha, rng)
    return [np.sort(p.astype(np.int64)) for p in parts]


def _dirichlet(labels: np.ndarray, clients: int, alpha: float, rng: np.random.Generator,
               tries: int = 100) -> list[np.ndarray]:
    """Each class spread over the clients by proportions drawn from Dir(alpha); redrawn until no client is
    empty (the usual construction, e.g. Hsu et al. 2019)."""
    for _ in range(tries):
        parts: list[list[np.ndarray]] = [[] for _ in range(clients)]
        for c in np.unique(labels):
            idx = rng.permutation(np.flatnonzero(labels == c))
            cuts = (np.cumsum(rng.dirichlet(np.full(clients, alpha)))[:-1] * len(idx)).astype(int)
            for i, piece in enumerate(np.split(idx, cuts)):
                parts[i].append(piece)
        joined = [np.concatenate(p) for p in parts]
        if min(len(p) for p in joined) > 0:
            return joined
    raise DataError(f"--split dirichlet:{alpha} left a client without data in {tries} draws of {clients} clients "
                    f"over {len(labels)} samples", hint="raise alpha, lower --clients, or use --split iid")


def label_counts(labels: np.ndarray, part: np.ndarray, classes: int) -> list[int]:
    """How many of each label a client holds (for the run's record of how skewed the split is)."""
    return np.bincount(np.asarray(labels)[part].astype(np.int64), minlength=classes).tolist()
