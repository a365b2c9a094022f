"""Top-k metrics over the full catalogue, each user's known items masked (no sampled negatives).

Definitions (also written into every report):
- Recall@k = hits in the top k / the user's number of test items (not min(k, |test|));
- NDCG@k = DCG@k / ideal DCG@k, binary gains, log2(rank + 1) discount, ideal over min(k, |test|) items;
- HR@k = 1 when at least one test item is in the top k;
- MRR = 1 / the full-ranking position of the user's best-ranked test item (no cut-off);
- coverage@k = distinct items in anyone's top k / catalogue size;
- pop_share@k = share of top-k slots filled by the 10 % most popular training items.
Each is averaged over the users with at least one test item and one known item.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

DEFINITIONS = {
    "recall": "hits in the top k / the user's number of test items",
    "ndcg": "DCG@k / ideal DCG@k, binary gains, 1/log2(rank+1), ideal over min(k, |test|)",
    "hr": "1 if any test item is in the top k, else 0",
    "mrr": "1 / full-ranking position of the best-ranked test item",
    "coverage": "distinct items in anyone's top k / catalogue size",
    "pop_share": "share of top-k slots given to the 10% most popular training items",
}


def top_popular(counts: np.ndarray, share: float = 0.1) -> np.ndarray:
    """Boolean mask of the ``share`` most popular items (by training count; ties by index)."""
    n = len(counts)
    order = np.argsort(-counts, kind="stable")
    mask = np.zeros(n, dtype=bool)
    mask[order[:max(1, round(n * share))]] = True
    return mask


def rank_top(scores: np.ndarray, k: int) -> np.ndarray:
    """Each row's top-k columns, best first; equal scores go to the lower item index (also at the k-th place,
    where a plain argpartition would pick among ties arbitrarily)."""
    n_rows, n_items = scores.shape
    k = min(k, n_items)
    kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1:k]  # each row's k-th largest score
    above = scores > kth
    ties = scores == kth
    room = k - above.sum(1, keepdims=True)
    if (ties.sum(1, keepdims=True) == room).all():  # every row's ties at the k-th score fit: no count needed
        chosen = above | ties
    else:
        chosen = above | (ties & (np.cumsum(ties, axis=1) <= room))
    cols = np.nonzero(chosen)[1].reshape(n_rows, k)  # row-major: each row's k columns, by index
    sub = np.take_along_axis(scores, cols, axis=1)
    order = np.lexsort((cols, -sub), axis=1)
    return np.take_along_axis(cols, order, axis=1)


def evaluate_ranking(score: Callable[[np.ndarray], np.ndarray], known: sp.csr_matrix, test: sp.csr_matrix,
                     ks: list[int], train_counts: np.ndarray, batch: int = 512) -> tuple[dict[str, float], dict]:
    """Metrics for every user with test items and a history; also the raw top-k lists for the plots.

    ``score(users)`` gives a [len(users), n_items] array; ``known`` holds the items masked per user.
    """
    n_users, n_items = test.shape
    has_test = np.diff(test.indptr) > 0
    has_known = np.diff(known.indptr) > 0
    users = np.flatnonzero(has_test & has_known)
    kmax = max(ks)
    popular = top_popular(train_counts)
    sums = {f"{m}@{k}": 0.0 for k in ks for m in ("recall", "ndcg", "hr")}
    mrr = 0.0
    recommended = {k: np.zeros(n_items, dtype=bool) for k in ks}
    pop_slots = dict.fromkeys(ks, 0)
    recall_curve = np.zeros(kmax)
    discounts = 1.0 / np.log2(np.arange(2, kmax + 2))
    tops = []
    for b in range(0, len(users), batch):
        us = users[b:b + batch]
        s = np.asarray(score(us), dtype=np.float64)
        mask = known[us]
        rows, cols = mask.nonzero()
        s[rows, cols] = -np.inf
        top = rank_top(s, kmax)
        tops.append(top)
        rel = test[us]
        for j in range(len(us)):
            truth = rel.indices[rel.indptr[j]:rel.indptr[j + 1]]
            hit = np.isin(top[j], truth)
            cum = np.cumsum(hit)
            n_true = len(truth)
            recall_curve += cum / n_true
            for k in ks:
                h = cum[k - 1]
                sums[f"recall@{k}"] += float(h) / n_true
                sums[f"hr@{k}"] += float(h > 0)
                ideal = discounts[:min(k, n_true)].sum()
                sums[f"ndcg@{k}"] += float((hit[:k] * discounts[:k]).sum() / ideal)
            first = truth[np.lexsort((truth, -s[j, truth]))[0]]  # best-ranked test item (ties: lower index)
            best = s[j, first]
            mrr += 1.0 / (1 + int((s[j] > best).sum()) + int((s[j, :first] == best).sum()))
        for k in ks:
            recommended[k][top[:, :k].ravel()] = True
            pop_slots[k] += int(popular[top[:, :k]].sum())
    n = max(1, len(users))
    out = {key: v / n for key, v in sums.items()}
    out["mrr"] = mrr / n
    for k in ks:
        out[f"coverage@{k}"] = float(recommended[k].sum() / n_items)
        out[f"pop_share@{k}"] = pop_slots[k] / (n * k)
    out["users"] = int(len(users))
    extra = {"recall_curve": (recall_curve / n).tolist(),
             "top": np.concatenate(tops) if tops else np.zeros((0, kmax), dtype=np.int64), "users": users}
    return out, extra


def rating_errors(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    err = np.asarray(pred, dtype=np.float64) - np.asarray(truth, dtype=np.float64)
    return {"rmse": float(np.sqrt(np.mean(err ** 2))), "mae": float(np.mean(np.abs(err)))}
