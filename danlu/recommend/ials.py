"""iALS for MF (Hu, Koren & Volinsky 2008), with the frequency-scaled regularization of Rendle et al. 2021
("Revisiting the performance of iALS on item recommendation benchmarks"): closed-form alternating solves.

Loss: Σ_{(u,i) observed} (p_u·q_i − 1)² + α Σ_u Σ_i (p_u·q_i)² + λ Σ_u (n_u + α·N)^ν |p_u|² + (same for items),
with n_u a row's positives and N the other side's size. With the other side Q fixed, each row is a ridge
solve: p_u = (Σ_{i∈I_u} q_i q_iᵀ + α·QᵀQ + λ(n_u + α·N)^ν I)⁻¹ Σ_{i∈I_u} q_i. The α·QᵀQ term (the Gramian
over every item, Krichene et al.'s trick) is computed once per half-step; the per-row sums are batched
(rows grouped by length, padded) and all systems solved by one batched Cholesky.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from danlu.recommend.fit import epoch_row


def half_step(x: sp.csr_matrix, fixed: torch.Tensor, alpha: float, reg: float, nu: float = 1.0,
              rows_per_block: int = 256) -> torch.Tensor:
    """The rows' vectors given the other side's ``fixed`` vectors (one ridge solve per row of ``x``).

    ``x``: rows × len(fixed), 1 = observed. Rows are taken in blocks of similar length (sorted), each
    block's gathered vectors padded with a zero row, so the observed Gram sums are one batched matmul."""
    x = x.tocsr()
    n_rows, d = x.shape[0], fixed.shape[1]
    counts = np.diff(x.indptr)
    gram_all = alpha * (fixed.T @ fixed)
    padded = torch.cat([fixed, torch.zeros(1, d, dtype=fixed.dtype)])  # index len(fixed): the zero row
    out = torch.zeros(n_rows, d, dtype=fixed.dtype)
    order = np.argsort(counts, kind="stable")
    eye = torch.eye(d, dtype=fixed.dtype)
    for b in range(0, n_rows, rows_per_block):
        rows = order[b:b + rows_per_block]
        width = max(1, int(counts[rows].max()))
        idx = np.full((len(rows), width), len(fixed), dtype=np.int64)
        for j, r in enumerate(rows):  # a gather index per row (cheap next to the matmuls)
            cols = x.indices[x.indptr[r]:x.indptr[r + 1]]
            idx[j, :len(cols)] = cols
        q = padded[torch.from_numpy(idx)]  # block × width × d
        lam = reg * (torch.from_numpy(counts[rows].astype(np.float64)) + alpha * len(fixed)) ** nu
        a = q.transpose(1, 2) @ q + gram_all + lam.to(fixed.dtype)[:, None, None] * eye
        rhs = q.sum(1, keepdim=True).transpose(1, 2)  # block × d × 1
        chol, info = torch.linalg.cholesky_ex(a)
        if bool((info > 0).any()):  # not positive definite (λ = 0 and too few observations): plain solve
            sol = torch.linalg.lstsq(a, rhs).solution
        else:
            sol = torch.cholesky_solve(rhs, chol)
        out[torch.from_numpy(rows)] = sol.squeeze(-1)
    return out


def fit_ials(model: Any, train: sp.csr_matrix, *, epochs: int, alpha: float, reg: float, nu: float, seed: int,
             validate: Callable[[], float | dict[str, float]] | None, monitor: str = "val", patience: int = 5,
             say: Callable[[str], None] = print, on_epoch: Callable[[dict[str, Any]], bool] | None = None,
             init_std: float = 0.1) -> dict[str, Any]:
    """Alternate user and item solves into ``model.user`` / ``model.item`` (an MF: its scoring, export and
    serving stay as they are; the item biases stay 0); keep the epoch with the best ``validate()`` as
    ``fit_bpr`` does (its history rows, patience, ``on_epoch`` stop)."""
    gen = torch.Generator().manual_seed(seed)
    x = (train > 0).astype(np.float32).tocsr()
    xt = x.T.tocsr()
    d = model.user.embedding_dim
    with torch.no_grad():  # small random start (std init_std/√d): the first user solve only needs Q
        model.item.weight.copy_(torch.randn(model.n_items, d, generator=gen) * (init_std / d ** 0.5))
        model.user.weight.zero_()
        model.item_bias.weight.zero_()
    best, best_epoch, best_state, history, stopped = -1.0, 0, None, [], False
    t0 = time.perf_counter()
    time_to_best = 0.0
    for epoch in range(1, epochs + 1):
        with torch.no_grad():
            q = model.item.weight.detach().double()
            p = half_step(x, q, alpha, reg, nu)
            q = half_step(xt, p, alpha, reg, nu)
            model.user.weight.copy_(p.float())
            model.item.weight.copy_(q.float())
        model.eval()
        row, score = epoch_row(epoch, _loss(x, p, q, alpha), validate, monitor, t0)
        history.append(row)
        say(f"epoch {epoch}  loss {row['train_loss']:.4f}  {monitor} {score:.4f}")
        if score > best:
            best, best_epoch, best_state = score, epoch, copy.deepcopy(model.state_dict())
            time_to_best = time.perf_counter() - t0
        if on_epoch is not None and on_epoch(row):
            stopped = True
            break
        if epoch - best_epoch >= patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    return {"best_epoch": best_epoch, "best_val": best, "epochs_run": len(history), "history": history,
            "seconds_to_best": round(time_to_best, 2), "seconds": round(time.perf_counter() - t0, 2),
            **({"stopped": True} if stopped else {})}


def _loss(x: sp.csr_matrix, p: torch.Tensor, q: torch.Tensor, alpha: float) -> float:
    """The unregularized weighted loss per positive: Σ_obs (s − 1)² + α Σ_all s², via the Gramians."""
    coo = x.tocoo()
    s = (p[torch.from_numpy(coo.row.astype(np.int64))] * q[torch.from_numpy(coo.col.astype(np.int64))]).sum(-1)
    everything = float(((p.T @ p) * (q.T @ q)).sum())  # Σ_u Σ_i (p_u·q_i)² = tr(PᵀP·QᵀQ)
    return (float(((s - 1) ** 2).sum()) + alpha * everything) / max(1, x.nnz)
