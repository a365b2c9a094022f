"""LightGCN (danlu/models/lightgcn.py): the normalized graph and what propagation does to the scores."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch


def test_the_graph_is_symmetrically_normalized_and_zero_layers_is_mf():
    from danlu.models.lightgcn import LightGCN

    torch.manual_seed(0)
    m = sp.csr_matrix(np.array([[1, 1, 0], [0, 1, 0]], dtype=np.float32))  # user 0: items 0, 1; user 1: item 1
    model = LightGCN(2, 3, dim=4, layers=0)
    model.set_graph(m)
    a = model.graph.to_dense().numpy()
    # users 0-1, items 2-4; degrees: u0 2, u1 1, i0 1, i1 2, i2 0 → Â[u, i] = 1 / √(d_u d_i)
    assert np.isclose(a[0, 2], 1 / np.sqrt(2)) and np.isclose(a[0, 3], 0.5) and np.isclose(a[1, 3], 1 / np.sqrt(2))
    assert np.allclose(a, a.T) and a[:, 4].sum() == 0 and a[:2, :2].sum() == 0
    users, empty = np.array([0, 1]), sp.csr_matrix((2, 3), dtype=np.float32)
    with torch.no_grad():
        mf = (model.user.weight @ model.item.weight.T + model.item_bias.weight.T).numpy()
    assert np.allclose(model.score(users, empty), mf, atol=1e-6)
    model.layers = 1  # one layer: each vector is the mean of itself and its normalized neighbours' sum
    e = torch.cat([model.user.weight, model.item.weight]).detach()
    mean = ((e + torch.from_numpy(a) @ e) / 2).numpy()
    expect = mean[:2] @ mean[2:].T + model.item_bias.weight.detach().numpy().T
    assert np.allclose(model.score(users, empty), expect, atol=1e-5)
    assert not np.allclose(expect, mf)
