"""The serving path's fast scoring equals the plain dense formulas on small random cases: EASE, item-kNN and
MF scores, EASE's "because" entries of B, and a batch of requests ranked together equals each request
ranked alone (seen and excluded items masked, ties to the lower index)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from danlu.models.recommenders import EASE, MF, ItemKNN


def _random_case(seed: int = 0, users: int = 30, items: int = 50) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    x = (rng.random((users, items)) < 0.15).astype(np.float32)
    x[np.arange(users), rng.integers(0, items, users)] = 1  # every user has a history
    return sp.csr_matrix(x)


def _dense_ease(x: sp.csr_matrix, l2: float) -> np.ndarray:
    p = np.linalg.inv((x.T @ x).toarray().astype(np.float64) + l2 * np.eye(x.shape[1]))
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0)
    return b


def test_ease_scores_and_because_equal_the_dense_b():
    x = _random_case()
    model = EASE(*x.shape, l2=2.0)
    model.fit(x)
    b = _dense_ease(x, 2.0)
    h = _random_case(seed=1, users=7)  # new histories, not the training rows
    assert np.abs(model.score(np.full(7, -1), h) - h.toarray() @ b).max() < 1e-5
    asks = [(h.indices[h.indptr[r]:h.indptr[r + 1]], np.array([3, 17, 41, 0])) for r in range(7)]
    asks.append((np.zeros(0, dtype=np.int64), np.array([5])))
    got = model.because_many(asks)
    assert got[-1] == [None]
    for (known, items), why in zip(asks[:-1], got[:-1], strict=True):
        for item, j in zip(items, why, strict=True):
            weights = b[known, item]
            assert j in known and b[j, item] >= weights.max() - 1e-5 * max(1.0, abs(weights.max()))
        assert model.because(known, int(items[0])) == why[0]


def test_item_knn_scores_equal_the_dense_product():
    x = _random_case()
    model = ItemKNN(*x.shape, neighbours=5, shrinkage=2.0)
    model.fit(x)
    s = np.zeros((x.shape[1], x.shape[1]), dtype=np.float32)
    idx, sim = model.neighbour_index.numpy(), model.neighbour_sim.numpy()
    for i in range(x.shape[1]):
        s[idx[i], i] = sim[i]  # item i's score sums its neighbours' similarities
    assert np.abs(model.score(np.arange(30), x) - x.toarray() @ s).max() < 1e-5


def test_mf_scores_equal_the_dense_product():
    torch.manual_seed(0)
    model = MF(30, 50, factors=8)
    u, v, bias = model.user.weight.detach().numpy(), model.item.weight.detach().numpy(), model.item_bias.weight
    with torch.no_grad():
        bias.normal_()
    expected = u[[3, 0, 29]] @ v.T + bias.detach().numpy().T
    assert np.abs(model.score(np.array([3, 0, 29]), _random_case()[[3, 0, 29]]) - expected).max() < 1e-5


@pytest.mark.parametrize("name", ["ease", "item_knn", "mf"])
def test_a_batch_of_requests_is_ranked_as_each_alone(name):
    """answer_many ranks all requests in one matrix: the same lists as sorting each request's dense scores."""
    from danlu.data.interactions import IdMap
    from danlu.recommend.predict import Ask, RecommenderRun

    x = _random_case(seed=2)
    torch.manual_seed(0)
    model = {"ease": lambda: EASE(30, 50, l2=2.0), "item_knn": lambda: ItemKNN(30, 50, neighbours=5),
             "mf": lambda: MF(30, 50, factors=8)}[name]()
    if name != "mf":
        model.fit(x)
    run = RecommenderRun.__new__(RecommenderRun)  # the served object without a run folder
    run.model, run.items, run.item_info = model.eval(), IdMap([str(i) for i in range(50)]), {}
    run.history, run.counts, run.index = x, np.asarray(x.sum(0)).ravel(), None
    asks = [Ask(str(u), u, x.indices[x.indptr[u]:x.indptr[u + 1]], [], [int(u) % 50, 7], k)
            for u, k in [(0, 5), (4, 12), (9, 1), (17, 50)]]
    asks.append(Ask("new", -1, np.array([1, 2, 3]), [], [], 8))
    asks.append(Ask("nobody", None, np.zeros(0, dtype=np.int64), ["unknown"], [], 6))
    got = run.answer_many(asks)
    for a, answer in zip(asks, got, strict=True):
        if a.index is None:
            s = run.counts.astype(np.float64)
        else:
            h = sp.csr_matrix((np.ones(len(a.history)), a.history, [0, len(a.history)]), shape=(1, 50))
            s = np.asarray(model.score(np.array([a.index]), h), dtype=np.float64)[0]
        s[a.history], s[a.exclude] = -np.inf, -np.inf
        order = [i for i in np.lexsort((np.arange(50), -s)) if np.isfinite(s[i])][:a.k]
        assert [r["item"] for r in answer["recommendations"]] == [str(i) for i in order]
        assert [r["score"] for r in answer["recommendations"]] == [round(float(s[i]), 5) for i in order]


@pytest.mark.parametrize("levels", [3, 1000, None])  # many ties, few ties, continuous scores
def test_rank_top_is_the_sort_by_score_then_index(levels):
    from danlu.recommend.metrics import rank_top

    rng = np.random.default_rng(levels or 0)
    s = rng.random((40, 60)) if levels is None else rng.integers(0, levels, (40, 60)).astype(np.float64)
    s[rng.random(s.shape) < 0.1] = -np.inf
    for k in (1, 7, 60):
        expected = np.stack([np.lexsort((np.arange(60), -row))[:k] for row in s])
        assert np.array_equal(rank_top(s, k), expected)
