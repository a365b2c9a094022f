"""LightGCN (He et al. 2020): MF whose user and item vectors are averaged over their graph neighbourhoods.

E⁰ = the id embeddings of users and items; E^(l+1) = Â E^l with Â = D^-½ A D^-½ over the user-item
interaction graph; the vectors scored are the mean of E⁰..E^L, so s(u, i) = e_u·e_i + b_i as MF's. Trained by
danlu/recommend/fit.py like MF (BPR): ``item_tower`` propagates once per batch and keeps the users' part for
``forward``. The graph is data, not a weight: ``set_graph`` installs it (training's matrix while fitting,
train + validation at test time, the run's saved history when served), so model.safetensors holds only the
embeddings and biases.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from danlu.models.recommenders import MF


class LightGCN(MF):
    def __init__(self, n_users: int, n_items: int, dim: int = 64, layers: int = 3, **_: Any):
        super().__init__(n_users, n_items, factors=dim, loss="bpr")
        self.layers = layers
        self.graph: torch.Tensor | None = None
        self._users: torch.Tensor | None = None

    def set_graph(self, interactions: sp.csr_matrix) -> None:
        """Â of the bipartite graph of ``interactions`` (users × items), as a sparse torch matrix."""
        m = sp.csr_matrix(interactions, dtype=np.float32)
        m.data[:] = 1.0
        n_u, n_i = m.shape
        a = sp.bmat([[None, m], [m.T, None]], format="coo")
        degree = np.asarray(a.sum(1)).ravel()
        inv = np.where(degree > 0, 1.0 / np.sqrt(np.maximum(degree, 1e-12)), 0.0)
        values = (inv[a.row] * a.data * inv[a.col]).astype(np.float32)
        self.graph = torch.sparse_coo_tensor(np.vstack([a.row, a.col]).astype(np.int64), values,
                                             (n_u + n_i, n_u + n_i), check_invariants=True).coalesce()

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(user vectors, item vectors): the mean of the layers' embeddings."""
        if self.graph is None:
            raise RuntimeError("LightGCN.set_graph was not called: the model has no interaction graph")
        e = torch.cat([self.user.weight, self.item.weight])
        total = e
        for _ in range(self.layers):
            e = self.graph @ e
            total = total + e
        total = total / (self.layers + 1)
        return total[:self.n_users], total[self.n_users:]

    def item_tower(self, items: torch.Tensor | None = None, drop: bool = False) -> torch.Tensor:
        users, table = self.propagate()
        self._users = users  # forward's user side for this batch
        return table if items is None else table[items]

    def item_vectors(self) -> torch.Tensor:
        return self.propagate()[1]

    def forward(self, users: torch.Tensor, items: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        if table is None or self._users is None:
            table = self.item_tower()
        return (self._users[users] * table[items]).sum(-1) + self.item_bias(items).squeeze(-1)

    @torch.no_grad()
    def user_vectors(self, users: np.ndarray, history: sp.csr_matrix) -> torch.Tensor:
        """Known users: their propagated vector; new ones (index −1): ridge fold-in on the items' vectors."""
        prop_users, _ = self.propagate()
        out = torch.zeros(len(users), self.user.embedding_dim)
        known = (users >= 0) & (users < self.n_users)
        if known.any():
            out[torch.from_numpy(known)] = prop_users[torch.from_numpy(users[known])]
        for j in np.flatnonzero(~known):
            out[j] = self.fold_in(history.indices[history.indptr[j]:history.indptr[j + 1]])
        return out

    @torch.no_grad()
    def score(self, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        u = self.user_vectors(users, history)
        return (u @ self.item_vectors().T + self.item_bias.weight.T).numpy()

    def user_table(self) -> torch.Tensor:
        """Every user's vector (what export writes as the user embeddings)."""
        return self.propagate()[0]
