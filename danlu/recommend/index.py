"""Top-k by inner product over a catalogue's item vectors: exact, or approximate with faiss past ~1 M items.

MF and the two-tower model score s(u, i) = p_u·q_i + b_i. With q'_i = [q_i, b_i] and p'_u = [p_u, 1] that is
one inner product, so a maximum-inner-product index over q' answers top-k without scoring every item. The
faiss index is an inverted file (IndexIVFFlat) over those vectors made Euclidean (one more coordinate, so the
nearest are the best-scoring): the catalogue is cut into √n clusters
by k-means (10 iterations on a sample of 40 vectors a cluster), and a query scores only the items of its
``probes`` best clusters; with every cluster probed it is exact. It is built when the run is loaded
(``danlu predict``/``serve``), never saved (no pickle or foreign binary in a run folder). Item-kNN and EASE
score from a user's whole history and have no item vectors: they are always exact. faiss is imported only
here, only when the index is used.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from danlu.errors import DanluError

AUTO_ITEMS = 1_000_000  # recommend.index: auto turns to faiss from this catalogue size (when installed)
TRAIN_SAMPLE = 40  # k-means sees this many vectors per cluster (faiss asks for 39 to 256)


def faiss_module() -> Any:
    try:
        import faiss
    except ImportError:
        raise DanluError("recommend.index: faiss needs the faiss-cpu package",
                         hint="pip install 'danlu[faiss]' (or faiss-cpu), or set recommend.index=exact") from None
    return faiss


def wanted(kind: str, n_items: int, model_name: str, has_vectors: bool) -> bool:
    """Whether predict/serve should build the faiss index for this run's ``recommend.index``."""
    if kind == "exact":
        return False
    if not has_vectors:
        if kind == "faiss":
            raise DanluError(f"recommend.index=faiss searches item vectors; model '{model_name}' scores from each "
                             "user's history and has none, so its top-k is always exact",
                             hint="set recommend.index=exact (or auto); faiss serves mf, two_tower and lightgcn")
        return False
    if kind == "faiss":
        return True
    if n_items < AUTO_ITEMS:
        return False
    try:
        import faiss  # noqa: F401 - auto uses it only where it is installed
    except ImportError:
        import logging

        logging.getLogger("danlu.recommend").warning("%d items: top-k is exact; pip install 'danlu[faiss]' for an "
                                                     "approximate index (recommend.index)", n_items)
        return False
    return True


class ItemIndex:
    """An IVF inner-product index over [item vectors, item bias]; ``search`` gives (scores, items) best first."""

    def __init__(self, vectors: np.ndarray, bias: np.ndarray, probes: int = 32, clusters: int | None = None,
                 seed: int = 0):
        faiss = faiss_module()
        items = np.hstack([vectors, bias.reshape(-1, 1)]).astype(np.float64)
        # inner product → Euclidean: x' = [x, √(M² − |x|²)], q' = [q, 0] gives |q' − x'|² = |q|² + M² − 2 q·x, so the
        # nearest items are the best-scoring ones, and k-means clusters by direction and norm alike (an
        # inner-product IVF clusters around the long vectors and misses much more)
        self.vectors = items.astype(np.float32)  # to score the found items exactly
        norms = (items ** 2).sum(1)
        self.m2 = float(norms.max())
        items = np.ascontiguousarray(np.hstack([items, np.sqrt(np.maximum(self.m2 - norms, 0))[:, None]]),
                                     dtype=np.float32)
        n, d = items.shape
        self.clusters = max(1, min(clusters or int(math.sqrt(n)), n // TRAIN_SAMPLE or 1))
        quantizer = faiss.IndexFlatL2(d)
        self.index = faiss.IndexIVFFlat(quantizer, d, self.clusters, faiss.METRIC_L2)
        self.index.cp.seed = seed  # the same clusters on every load
        self.index.cp.niter = 10
        self.index.cp.min_points_per_centroid = 1  # a small catalogue: fewer points is expected, not a warning
        rng = np.random.default_rng(seed)
        sample = items if n <= TRAIN_SAMPLE * self.clusters else items[
            np.sort(rng.choice(n, TRAIN_SAMPLE * self.clusters, replace=False))]
        self.index.train(sample)
        self.index.add(items)
        self.index.nprobe = min(probes, self.clusters)
        self.n_items = n

    def search(self, user_vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` per row (fewer where the probed clusters hold fewer items: those slots are -1, -inf)."""
        q = np.hstack([user_vectors, np.ones((len(user_vectors), 1)), np.zeros((len(user_vectors), 1))])
        _, items = self.index.search(np.ascontiguousarray(q, dtype=np.float32), min(k, self.n_items))
        items = items.astype(np.int64)
        # the found items scored exactly (the distances are float32 sums of large terms), best first, ties by index
        scores = np.einsum("qd,qkd->qk", q[:, :-1], self.vectors[np.maximum(items, 0)].astype(np.float64))
        scores[items < 0] = -np.inf
        order = np.lexsort((items, -scores), axis=1) if items.size else np.zeros_like(items)
        return np.take_along_axis(scores, order, 1), np.take_along_axis(items, order, 1)


def for_model(model: Any, probes: int) -> ItemIndex:
    """The index over an MF / two-tower model's item vectors and biases."""
    import torch

    with torch.no_grad():
        vectors = model.item_vectors().detach().numpy()
        bias = model.item_bias.weight.detach().reshape(-1).numpy()
    return ItemIndex(vectors, bias, probes=probes)


def top_k(index: ItemIndex, user_vectors: np.ndarray, k: int, masked: list[np.ndarray]) -> list[tuple]:
    """Per user the best ``k`` items not in its ``masked`` list: (items, scores). Asks the index for k plus the
    number masked, so masking never leaves a list short while the catalogue has items left."""
    want = k + max((len(m) for m in masked), default=0)
    scores, items = index.search(user_vectors, want)
    out = []
    for row, mask in enumerate(masked):
        keep = np.isfinite(scores[row]) & ~np.isin(items[row], mask)
        out.append((items[row][keep][:k], scores[row][keep][:k]))
    return out
