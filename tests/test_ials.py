"""iALS (danlu/recommend/ials.py): one half-step is the closed-form ridge solution, and a fit ranks."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from danlu.recommend.ials import fit_ials, half_step


def test_a_half_step_is_the_dense_ridge_solution_per_row():
    rng = np.random.default_rng(0)
    n_rows, n_items, d, alpha, reg, nu = 7, 11, 3, 0.3, 0.05, 0.7
    dense = (rng.random((n_rows, n_items)) < 0.35).astype(np.float32)
    dense[2] = 0  # a row with no positives gets the zero vector
    q = torch.from_numpy(rng.normal(size=(n_items, d)))
    got = half_step(sp.csr_matrix(dense), q, alpha, reg, nu, rows_per_block=3).numpy()
    for u in range(n_rows):
        obs = dense[u] > 0
        lam = reg * (obs.sum() + alpha * n_items) ** nu
        # Σ_obs (q·p − 1)² + α Σ_all (q·p)² + λ|p|², written as one stacked least-squares problem
        a = np.vstack([q.numpy()[obs], np.sqrt(alpha) * q.numpy(), np.sqrt(lam) * np.eye(d)])
        b = np.concatenate([np.ones(obs.sum()), np.zeros(n_items + d)])
        want = np.linalg.lstsq(a, b, rcond=None)[0]
        np.testing.assert_allclose(got[u], want, rtol=1e-8, atol=1e-10)
    assert np.all(got[2] == 0)


def test_a_fit_ranks_held_out_items_of_two_taste_groups_first():
    from danlu.models.recommenders import MF

    rng = np.random.default_rng(1)
    n_users, n_items = 40, 30
    group = np.arange(n_users) % 2  # users of group g like items of the same parity
    likes = (np.arange(n_items)[None, :] % 2 == group[:, None]) & (rng.random((n_users, n_items)) < 0.6)
    train = sp.csr_matrix(likes.astype(np.float32))
    model = MF(n_users, n_items, factors=2, loss="ials")
    info = fit_ials(model, train, epochs=5, alpha=0.1, reg=0.1, nu=1.0, seed=0, validate=None,
                    say=lambda *_: None)
    assert info["best_epoch"] == 5 and len(info["history"]) == 5
    scores = model.score(np.arange(n_users), train)
    unseen = ~likes
    for u in range(n_users):  # every unseen item of the user's parity outranks every one of the other
        mine = scores[u][unseen[u] & (np.arange(n_items) % 2 == group[u])]
        other = scores[u][unseen[u] & (np.arange(n_items) % 2 != group[u])]
        if len(mine) and len(other):
            assert mine.min() > other.max()
