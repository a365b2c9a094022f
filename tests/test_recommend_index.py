"""recommend.index: the faiss inner-product index against exact top-k (danlu/recommend/index.py)."""

from __future__ import annotations

import numpy as np
import pytest

from danlu.errors import DanluError
from tests.test_recommend_evaluate import _table

pytest.importorskip("faiss")


def _exact(users: np.ndarray, vectors: np.ndarray, bias: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(users @ vectors.T + bias), axis=1, kind="stable")[:, :k]


def test_every_cluster_probed_is_exact_and_fewer_trade_recall():
    from danlu.recommend.index import ItemIndex

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(40, 16))
    vectors = (centres[rng.integers(0, 40, 8000)] + 0.3 * rng.normal(size=(8000, 16))).astype(np.float32)
    bias = (0.1 * rng.normal(size=8000)).astype(np.float32)
    users = rng.normal(size=(64, 16)).astype(np.float32)
    exact = _exact(users, vectors, bias, 10)
    index = ItemIndex(vectors, bias, probes=10**6)
    scores, items = index.search(users, 10)
    assert np.array_equal(items, exact)
    assert np.allclose(scores, np.take_along_axis(users @ vectors.T + bias, exact, 1), atol=1e-4)
    index.index.nprobe = 2
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(index.search(users, 10)[1], exact, strict=True)])
    assert 0.3 < recall < 1.0  # approximate: 2 of the index's clusters searched


def test_a_run_served_through_the_index_matches_exact_top_k(tmp_path):
    from danlu.api import train
    from danlu.recommend.predict import RecommenderRun

    data = _table(tmp_path)
    on = ["data.name=interactions", f"data.path={data}", "recommend.rating_scale=[1,5]", "train.epochs=2",
          "model.factors=8"]
    result = train("movielens-bpr", [*on, "recommend.index=faiss", "recommend.index_probes=1000"],
                   runs_dir=tmp_path / "runs", progress=False, plots=False)
    indexed = RecommenderRun(result.run)
    assert indexed.index is not None
    exact = RecommenderRun(result.run)
    exact.index = None
    for ask in ({"user": "c1"}, {"user": "c4", "exclude": ["p1", "p20"]}, {"items": ["p3", "p7"]},
                {"user": "nobody"}):
        a, b = indexed.recommend(k=5, **ask), exact.recommend(k=5, **ask)
        assert [r["item"] for r in a["recommendations"]] == [r["item"] for r in b["recommendations"]]
        assert np.allclose([r["score"] for r in a["recommendations"]], [r["score"] for r in b["recommendations"]],
                           atol=1e-4)
    ease = train("movielens-ease", [*on[:3], "recommend.index=faiss"], runs_dir=tmp_path / "runs", progress=False,
                 plots=False)
    with pytest.raises(DanluError, match="always exact"):
        RecommenderRun(ease.run)
