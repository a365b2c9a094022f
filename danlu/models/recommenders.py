"""Recommendation models: each an nn.Module whose state (buffers and parameters) is its safetensors file.

Every model scores a batch of users from their known items (``history``, a users × items CSR matrix) and,
where it keeps per-user state, their indices; a new user is scored from history alone (fold-in), so the
same call serves ``--user`` and ``--items``. Closed-form fits (popularity, item-kNN, EASE) live here; the
gradient-trained models (MF, two-tower) are trained by danlu/recommend/fit.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn


def binary(m: sp.csr_matrix) -> sp.csr_matrix:
    out = m.copy().tocsr()
    out.data = np.ones_like(out.data, dtype=np.float32)
    return out


class Recommender(nn.Module):
    """Common interface: ``score(users, history) -> [len(users), n_items]`` numpy float32."""

    explains = False  # neighbour models say "because you rated X"
    trained = False  # gradient-trained (danlu/recommend/fit.py) rather than fit in closed form

    def __init__(self, n_users: int, n_items: int):
        super().__init__()
        self.n_users, self.n_items = n_users, n_items

    def fit(self, train: sp.csr_matrix) -> None:  # closed-form models override
        raise NotImplementedError

    def score(self, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        raise NotImplementedError

    def warm(self) -> None:
        """Build what scoring and explaining cache, so that a server's first request does not pay for it."""

    def because(self, history_items: np.ndarray, item: int) -> int | None:
        """The known item that contributed most to ``item``'s score (neighbour models)."""
        return None

    def because_many(self, asks: list[tuple[np.ndarray, np.ndarray]]) -> list[list[int | None]]:
        """``because`` for each (known items, recommended items) pair of a batch of requests."""
        return [[self.because(h, int(i)) for i in items] for h, items in asks]


class Popularity(Recommender):
    def __init__(self, n_users: int, n_items: int, **_: Any):
        super().__init__(n_users, n_items)
        self.register_buffer("counts", torch.zeros(n_items))

    def fit(self, train: sp.csr_matrix) -> None:
        self.counts.copy_(torch.from_numpy(np.asarray(binary(train).sum(0), dtype=np.float32).ravel()))

    def score(self, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        return np.tile(self.counts.numpy(), (len(users), 1))


class ItemKNN(Recommender):
    """Item-item cosine with shrinkage (Sarwar et al. 2001): a candidate item is scored by the known items among
    its ``neighbours`` most similar ones, s(u, j) = Σ sim(i, j) over known i in N(j).

    The pruning is by the candidate's neighbourhood (N(j)), as in item-based CF, not by each known item's: on
    MovieLens (temporal split) it ranked clearly better on validation, rare candidates being no longer
    pushed up by a popular item that happens to list them among its few neighbours."""

    explains = True

    def __init__(self, n_users: int, n_items: int, neighbours: int = 100, shrinkage: float = 10.0, **_: Any):
        super().__init__(n_users, n_items)
        self.k, self.shrinkage = min(neighbours, max(1, n_items - 1)), shrinkage
        self.register_buffer("neighbour_index", torch.zeros(n_items, self.k, dtype=torch.int64))
        self.register_buffer("neighbour_sim", torch.zeros(n_items, self.k))
        # 1: row j holds candidate j's neighbourhood (fit since 2026-12-07); 0: row i holds known item i's
        # neighbours, the rule runs saved before (their files lack this buffer and keep ranking as they did)
        self.register_buffer("candidate_pruned", torch.zeros((), dtype=torch.int64))
        self._matrix: sp.csr_matrix | None = None

    optional_buffers = ("candidate_pruned",)

    def fit(self, train: sp.csr_matrix) -> None:
        x = torch.from_numpy(binary(train).toarray())
        co = x.T @ x  # co-interaction counts
        norms = co.diagonal().sqrt()
        sim = co / (norms[:, None] * norms[None, :] + self.shrinkage + 1e-12)
        sim.fill_diagonal_(0)
        vals, idx = torch.topk(sim, self.k, dim=1)
        self.neighbour_index.copy_(idx)
        self.neighbour_sim.copy_(vals)
        self.candidate_pruned.fill_(1)
        self._matrix = None

    def matrix(self) -> sp.csr_matrix:
        """S[i, j]: sim(i, j) where i is one of item j's kept neighbours, else 0 (so scores are history · S)."""
        if self._matrix is None:
            owners = np.repeat(np.arange(self.n_items), self.k)
            neighbours = self.neighbour_index.numpy().ravel()
            rows, cols = (neighbours, owners) if int(self.candidate_pruned) else (owners, neighbours)
            self._matrix = sp.csr_matrix((self.neighbour_sim.numpy().ravel(), (rows, cols)),
                                         shape=(self.n_items, self.n_items))
        return self._matrix

    def score(self, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        return np.asarray((binary(history) @ self.matrix()).todense(), dtype=np.float32)

    def warm(self) -> None:
        self.matrix()

    def because(self, history_items: np.ndarray, item: int) -> int | None:
        if len(history_items) == 0:
            return None
        col = np.asarray(self.matrix()[history_items, item].todense()).ravel()
        return int(history_items[int(np.argmax(col))]) if col.max() > 0 else None

    def because_many(self, asks: list[tuple[np.ndarray, np.ndarray]]) -> list[list[int | None]]:
        out = []
        for h, items in asks:  # S[known, recommended] in one slice per request
            if len(h) == 0 or len(items) == 0:
                out.append([None] * len(items))
                continue
            block = self.matrix()[h][:, items].toarray()
            best = block.argmax(0)
            out.append([int(h[b]) if block[b, j] > 0 else None for j, b in enumerate(best)])
        return out


class EASE(Recommender):
    """EASE (Steck 2019): B = I − P·diag(1/diag P), P = (XᵀX + λI)⁻¹, scores = x·B.

    With fewer users than items P comes from the users' side (Woodbury): P = (I − Xᵀ(XXᵀ + λI)⁻¹X)/λ, a
    users × users inverse instead of an items × items one. The model keeps X's item lists, that inverse and
    diag P, so x·B is computed without the dense items × items matrix (saved files stay small).
    """

    explains = True

    def __init__(self, n_users: int, n_items: int, l2: float = 500.0, **_: Any):
        super().__init__(n_users, n_items)
        self.l2 = l2
        self.register_buffer("x_indptr", torch.zeros(n_users + 1, dtype=torch.int64))
        self.register_buffer("x_indices", torch.zeros(0, dtype=torch.int64))
        self.register_buffer("kernel", torch.zeros(n_users, n_users, dtype=torch.float64))  # (XXᵀ + λI)⁻¹
        self.register_buffer("p_diag", torch.ones(n_items, dtype=torch.float64))
        self._x: sp.csr_matrix | None = None
        self._xt: sp.csr_matrix | None = None
        self._z: np.ndarray | None = None

    def fit(self, train: sp.csr_matrix) -> None:
        x = binary(train).astype(np.float64)
        self.x_indptr = torch.from_numpy(x.indptr.astype(np.int64))
        self.x_indices = torch.from_numpy(x.indices.astype(np.int64))
        gram_users = torch.from_numpy((x @ x.T).toarray())
        gram_users.diagonal().add_(self.l2)
        kernel = torch.linalg.inv(gram_users)
        self.kernel = kernel
        # diag P = (1 − diag(Xᵀ K X)) / λ, with diag(XᵀKX)_i = x_iᵀ K x_i over item i's users
        xt = x.T.tocsr()
        kx = (xt @ kernel.numpy())  # items × users, dense
        quad = np.asarray(xt.multiply(kx).sum(1)).ravel()
        self.p_diag = torch.from_numpy((1.0 - quad) / self.l2)
        self._x, self._z = None, None

    def _train_matrix(self) -> sp.csr_matrix:
        if self._x is None:
            indices = self.x_indices.numpy()
            self._x = sp.csr_matrix((np.ones(len(indices)), indices, self.x_indptr.numpy()),
                                    shape=(self.n_users, self.n_items))
            self._xt = self._x.T.tocsr()  # items × users: item i's users in row i (converted once)
        return self._x

    def _item_users(self) -> sp.csr_matrix:
        """Xᵀ as CSR: row i lists the training users of item i."""
        self._train_matrix()
        return self._xt

    def _item_factors(self) -> np.ndarray:
        """Z = Xᵀ·L with K = L·Lᵀ (Cholesky; K is positive definite): x_aᵀ·K·x_b = z_a·z_b, so any entry of
        P (and of B) is one dot product of two rows. Items × users in float32 (it only ranks a user's known
        items for "because"; half the bytes to gather), computed once when first asked."""
        if self._z is None:
            chol = torch.linalg.cholesky(self.kernel).numpy()
            self._z = np.ascontiguousarray(self._item_users() @ chol, dtype=np.float32)
        return self._z

    def warm(self) -> None:
        self._item_factors()

    def _xkx(self, h: sp.csr_matrix) -> np.ndarray:
        """(h·Xᵀ·K)·X for a batch of histories, as Xᵀ-rows times a dense block: sparse × dense products only
        (a dense block times a sparse X went through scipy's slower column kernel)."""
        xt = self._item_users()
        hk = (h @ xt).toarray() @ self.kernel.numpy()  # b × users
        return np.asarray(xt @ hk.T).T  # b × items

    def _xp(self, h: sp.csr_matrix) -> np.ndarray:
        """h·P for a batch of histories."""
        return (h.toarray() - self._xkx(h)) / self.l2

    def score(self, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        h = binary(history).astype(np.float64)
        hp = np.asarray(self._xp(h))
        # x·B = x − (x·P)·diag(1/diag P); the diagonal of B is zero, so x's own items get 0 from themselves
        scores = h.toarray() - hp / self.p_diag.numpy()[None, :]
        return scores.astype(np.float32)

    def because(self, history_items: np.ndarray, item: int) -> int | None:
        """The known item i with the largest B[i, item]."""
        if len(history_items) == 0:
            return None
        return self.because_many([(np.asarray(history_items), np.asarray([item]))])[0][0]

    def because_many(self, asks: list[tuple[np.ndarray, np.ndarray]]) -> list[list[int | None]]:
        """B[known, recommended] entries only: B[h, i] = −P[h, i]/P[i, i] with P[h, i] = (δ_hi − x_hᵀ·K·x_i)/λ,
        x_h item h's users: x_hᵀ·K·x_i = z_h·z_i with Z = Xᵀ·L, K = L·Lᵀ (a few small dense products)."""
        if not asks:
            return []
        z = self._item_factors()
        p_diag = self.p_diag.numpy()
        out = []
        for h, items in asks:
            items = np.asarray(items, dtype=np.int64)
            if len(h) == 0:
                out.append([None] * len(items))
                continue
            h = np.asarray(h, dtype=np.int64)
            quad = (z[h] @ z[items].T).astype(np.float64)  # |h| × |items|: x_hᵀ·K·x_i
            p = ((h[:, None] == items[None, :]).astype(np.float64) - quad) / self.l2
            weights = -p / p_diag[items][None, :]
            out.append([int(h[b]) for b in weights.argmax(0)])
        return out


class MF(Recommender):
    """Matrix factorization: s(u, i) = p_u·q_i + b_i (+ b_u + μ for ratings). New users fold in by ridge."""

    trained = True

    def __init__(self, n_users: int, n_items: int, factors: int = 64, loss: str = "bpr", dropout: float = 0.0,
                 **_: Any):
        super().__init__(n_users, n_items)
        self.loss, self.dropout = loss, dropout  # dropout: on the user vector in training (fit.py)
        self.user = nn.Embedding(n_users, factors)
        self.item = nn.Embedding(n_items, factors)
        self.user_bias = nn.Embedding(n_users, 1)
        self.item_bias = nn.Embedding(n_items, 1)
        self.global_bias = nn.Parameter(torch.zeros(1))
        for emb in (self.user, self.item):
            nn.init.normal_(emb.weight, std=0.1 if loss == "bpr" else 0.01)
        for emb in (self.user_bias, self.item_bias):
            nn.init.zeros_(emb.weight)

    def item_vectors(self) -> torch.Tensor:
        return self.item.weight

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        s = (self.user(users) * self.item(items)).sum(-1) + self.item_bias(items).squeeze(-1)
        if self.loss == "mse":
            s = s + self.user_bias(users).squeeze(-1) + self.global_bias
        return s

    def user_vectors(self, users: np.ndarray, history: sp.csr_matrix) -> torch.Tensor:
        """Known users: their embedding; users beyond the table (or with index −1): ridge fold-in."""
        out = torch.zeros(len(users), self.user.embedding_dim)
        known = (users >= 0) & (users < self.n_users)
        if known.any():
            out[torch.from_numpy(known)] = self.user.weight[torch.from_numpy(users[known])].detach()
        for j in np.flatnonzero(~known):
            out[j] = self.fold_in(history.indices[history.indptr[j]:history.indptr[j + 1]])
        return out

    def fold_in(self, items: np.ndarray, l2: float = 1.0) -> torch.Tensor:
        """The user vector that scores these items highest in least squares: (VᵀV + λI)⁻¹ Vᵀ·1 over them."""
        q = self.item_vectors().detach()[torch.from_numpy(np.asarray(items, dtype=np.int64))]
        a = q.T @ q + l2 * torch.eye(q.shape[1])
        return torch.linalg.solve(a, q.sum(0))

    @torch.no_grad()
    def score(self, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        u = self.user_vectors(users, history)
        s = u @ self.item_vectors().detach().T + self.item_bias.weight.detach().T
        return s.numpy()


class TwoTower(MF):
    """User tower: an id embedding (fold-in for new users). Item tower: id embedding (dropped at random while
    training) + genres + year bucket + title tokens, summed then a linear layer: a new item scores from its
    side features alone."""

    def __init__(self, n_users: int, n_items: int, dim: int = 64, features: list[str] = ("id", "genres", "year",
                 "title"), n_genres: int = 1, n_years: int = 1, n_tokens: int = 1, id_dropout: float = 0.3,
                 dropout: float = 0.0, **_: Any):
        super().__init__(n_users, n_items, factors=dim, loss="bpr", dropout=dropout)
        self.features, self.id_dropout = list(features), id_dropout
        self.genre = nn.EmbeddingBag(max(1, n_genres), dim, mode="mean")
        self.year = nn.Embedding(max(1, n_years), dim)
        self.title = nn.EmbeddingBag(max(1, n_tokens), dim, mode="mean")
        self.mix = nn.Linear(dim, dim)
        for m in (self.genre, self.year, self.title):
            nn.init.normal_(m.weight, std=0.1)
        # side features per item, as flat index lists + offsets (EmbeddingBag's layout); set by set_features
        for name in ("genre_idx", "genre_off", "title_idx", "title_off"):
            self.register_buffer(name, torch.zeros(n_items if name.endswith("off") else 1, dtype=torch.int64))
        self.register_buffer("year_idx", torch.zeros(n_items, dtype=torch.int64))

    def set_features(self, genre: tuple[np.ndarray, np.ndarray], year: np.ndarray,
                     title: tuple[np.ndarray, np.ndarray]) -> None:
        self.genre_idx, self.genre_off = (torch.from_numpy(a.astype(np.int64)) for a in genre)
        self.title_idx, self.title_off = (torch.from_numpy(a.astype(np.int64)) for a in title)
        self.year_idx = torch.from_numpy(year.astype(np.int64))

    def side(self, genre: tuple[torch.Tensor, torch.Tensor], year: torch.Tensor,
             title: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """The side-feature part of the item tower, for any items (new ones included)."""
        out = 0
        if "genres" in self.features:
            out = out + self.genre(*genre)
        if "year" in self.features:
            out = out + self.year(year)
        if "title" in self.features:
            out = out + self.title(*title)
        return out

    def item_tower(self, items: torch.Tensor | None = None, drop: bool = False) -> torch.Tensor:
        side = self.side((self.genre_idx, self.genre_off), self.year_idx, (self.title_idx, self.title_off))
        v = self.mix(side) if not isinstance(side, int) else 0
        if "id" in self.features:
            ids = self.item.weight
            if drop and self.id_dropout > 0:
                keep = (torch.rand(ids.shape[0], 1) >= self.id_dropout).to(ids.dtype)
                ids = ids * keep
            v = v + ids
        return v if items is None else v[items]

    def item_vectors(self) -> torch.Tensor:
        return self.item_tower()

    def side_vectors(self) -> torch.Tensor:
        """mix(side features) of the model's own items: a new item's whole vector, a known item's side part."""
        side = self.side((self.genre_idx, self.genre_off), self.year_idx, (self.title_idx, self.title_off))
        return self.mix(side) if not isinstance(side, int) else torch.zeros_like(self.item.weight)

    def side_parameters(self) -> list[nn.Parameter]:
        return [*self.genre.parameters(), *self.year.parameters(), *self.title.parameters(), *self.mix.parameters()]

    def forward(self, users: torch.Tensor, items: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        table = self.item_tower(drop=self.training) if table is None else table
        return (self.user(users) * table[items]).sum(-1) + self.item_bias(items).squeeze(-1)

    @torch.no_grad()
    def score_new_items(self, user_vectors: torch.Tensor, genre: tuple[torch.Tensor, torch.Tensor],
                        year: torch.Tensor, title: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Scores of items that were not in training, from their side features only."""
        return user_vectors @ self.mix(self.side(genre, year, title)).T


BUILDERS = {"popularity": Popularity, "item_knn": ItemKNN, "ease": EASE, "mf": MF, "two_tower": TwoTower}


def build_recommender(name: str, options: dict[str, Any], n_users: int, n_items: int, **extra: Any) -> Recommender:
    """A fresh model; MF's loss "auto" is resolved by the caller (bpr for ranking, mse for ratings)."""
    return BUILDERS[name](n_users, n_items, **options, **extra)
