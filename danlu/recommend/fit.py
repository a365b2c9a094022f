"""Gradient training for MF and the two-tower model: BPR on sampled negatives (ranking) or MSE (ratings),
with the epoch chosen on validation Recall@k / RMSE and the best weights kept."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from danlu.models.recommenders import MF


def _optimizer(model: torch.nn.Module, name: str, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)


def epoch_row(epoch: int, train_loss: float, validate: Callable[[], float | dict[str, float]] | None,
              monitor: str, t0: float) -> tuple[dict[str, Any], float]:
    """An epoch's history row (its validation metrics, or the epoch number without a validate) and the score
    that picks the best epoch: one definition for the gradient fits and iALS."""
    measured = validate() if validate is not None else float(epoch)
    score = measured if not isinstance(measured, dict) else measured[monitor]
    row = {"epoch": epoch, "train_loss": train_loss, **(measured if isinstance(measured, dict) else {"val": score}),
           "seconds": round(time.perf_counter() - t0, 2)}
    return row, score


def fit_bpr(model: MF, train: sp.csr_matrix, *, epochs: int, batch_size: int, lr: float, reg: float,
            negatives: int, optimizer: str, weight_decay: float, seed: int,
            validate: Callable[[], float | dict[str, float]] | None, patience: int = 5,
            say: Callable[[str], None] = print, loss_name: str = "bpr", monitor: str = "val",
            on_epoch: Callable[[dict[str, Any]], bool] | None = None, state_path: Path | None = None,
            resume: bool = False, shard: Any = None) -> dict[str, Any]:
    """Train on (user, positive, sampled negative) triples (BPR) or on (user, positive) against the whole
    catalogue (``loss_name="softmax"``); keep the weights with the best ``validate()`` (a number, or a dict
    of validation metrics of which ``monitor`` is scored); without one, all epochs run and the last weights
    stay.

    ``on_epoch(row)`` sees each epoch's history row and returns True to stop (a search's pruner);
    ``state_path`` keeps a checkpoint after every epoch, and ``resume`` continues from it (a run killed
    mid-fit ends exactly as an uninterrupted one). ``shard`` (recommend/distributed.py) trains this process's
    share of each batch and sums the gradients across processes (--nproc); only its writer saves state."""
    from danlu.recommend.checkpoint import load_fit_state, save_fit_state

    if hasattr(model, "set_graph"):  # LightGCN propagates over the matrix it is trained on
        model.set_graph(train)
    gen = torch.Generator().manual_seed(seed)
    coo = train.tocoo()
    users = torch.from_numpy(coo.row.astype(np.int64))
    items = torch.from_numpy(coo.col.astype(np.int64))
    opt = _optimizer(model, optimizer, lr, weight_decay)
    best, best_epoch, best_state, history = -1.0, 0, None, []
    done, stopped, start, elapsed, time_to_best = False, False, 1, 0.0, 0.0
    if resume and state_path is not None and state_path.is_file():
        meta, best_state = load_fit_state(state_path, model, opt, gen)
        best, best_epoch, history = meta["best"], meta["best_epoch"], meta["history"]
        done, start = meta["done"], meta["epoch"] + 1
        elapsed, time_to_best = meta["seconds"], meta["seconds_to_best"]
        say(f"resumed after epoch {meta['epoch']}" + (" (finished)" if done else ""))
    t0 = time.perf_counter() - elapsed
    for epoch in range(start, epochs + 1):
        if done:
            break
        model.train()
        if loss_name == "softmax" and shard is None:
            total = _softmax_epoch(model, opt, train, gen, batch_size, reg)
        else:  # BPR; and the softmax under --nproc, whose shares split each batch's positives
            total = _bpr_epoch(model, opt, users, items, gen, batch_size, negatives, reg, loss_name, shard)
        model.eval()
        row, score = epoch_row(epoch, total / len(users), validate, monitor, t0)
        history.append(row)
        say(f"epoch {epoch}  loss {row['train_loss']:.4f}  {monitor} {score:.4f}")
        if score > best:
            best, best_epoch, best_state = score, epoch, copy.deepcopy(model.state_dict())
            time_to_best = time.perf_counter() - t0
        done = epoch == epochs or epoch - best_epoch >= patience
        if state_path is not None and (shard is None or shard.writer):
            save_fit_state(state_path, model, opt, gen, best_state,
                           {"epoch": epoch, "done": done, "best": best, "best_epoch": best_epoch,
                            "history": history, "seconds": time.perf_counter() - t0,
                            "seconds_to_best": time_to_best})
        if on_epoch is not None and on_epoch(row):
            stopped = True
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    return {"best_epoch": best_epoch, "best_val": best, "epochs_run": len(history), "history": history,
            "seconds_to_best": round(time_to_best, 2), "seconds": round(time.perf_counter() - t0, 2),
            **({"stopped": True} if stopped else {})}


def _bpr_epoch(model: MF, opt: torch.optim.Optimizer, users: torch.Tensor, items: torch.Tensor,
               gen: torch.Generator, batch_size: int, negatives: int, reg: float, loss_name: str,
               shard: Any = None) -> float:
    """One pass over the positives; the summed loss (with a ``shard``: over all processes)."""
    order = torch.randperm(len(users), generator=gen)
    total = 0.0
    for b in range(0, len(order), batch_size):
        idx = order[b:b + batch_size]
        u = users[idx].repeat(negatives)
        i = items[idx].repeat(negatives)
        j = torch.randint(0, model.n_items, (len(u),), generator=gen)
        if shard is not None:  # --nproc: this process's share of the batch (recommend/distributed.py)
            idx, u, i, j = shard.take(idx, u, i, j)
        table = model.item_tower(drop=True) if hasattr(model, "item_tower") else None
        vectors = table if table is not None else model.item.weight
        if loss_name == "softmax":  # cross-entropy over the whole catalogue: every item a negative
            logits = _dropped(model, model.user(users[idx])) @ vectors.T + model.item_bias.weight.T
            loss = F.cross_entropy(logits, items[idx])
            if reg:
                loss = loss + reg * ((model.user(users[idx]) ** 2).sum(-1).mean() + (vectors ** 2).sum(-1).mean())
        else:
            if getattr(model, "dropout", 0.0):  # dropout on the user vector: MF / two-tower scored here
                user = _dropped(model, model.user(u))
                pos = (user * vectors[i]).sum(-1) + model.item_bias(i).squeeze(-1)
                neg = (user * vectors[j]).sum(-1) + model.item_bias(j).squeeze(-1)
                vecs = [model.user(u), vectors[i], vectors[j]]
            elif table is None:
                pos, neg = model(u, i), model(u, j)
                vecs = [model.user(u), model.item(i), model.item(j)]
            else:
                pos, neg = model(u, i, table), model(u, j, table)
                vecs = [model.user(u), table[i], table[j]]
            loss = -F.logsigmoid(pos - neg).mean()
            if reg:
                loss = loss + reg * sum((v ** 2).sum(-1).mean() for v in vecs)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if shard is not None:
            shard.reduce(model)
        opt.step()
        total += float(loss.detach()) * len(idx) if len(idx) else 0.0  # an empty share's mean is NaN
    return total if shard is None else shard.total(total)


def _dropped(model: MF, user: torch.Tensor) -> torch.Tensor:
    """The user vectors with the model's training dropout (none when ``model.dropout`` is 0)."""
    rate = getattr(model, "dropout", 0.0)
    return F.dropout(user, rate, training=True) if rate else user


def user_batches(train: sp.csr_matrix, gen: torch.Generator, batch_size: int) -> list[np.ndarray]:
    """The users with positives in random order, cut into groups of about ``batch_size`` positives each."""
    counts = np.diff(train.indptr)
    order = torch.randperm(len(counts), generator=gen).numpy()
    order = order[counts[order] > 0]
    step = np.cumsum(counts[order]) // max(1, batch_size)
    cuts = np.flatnonzero(np.diff(step)) + 1
    return [b for b in np.split(order, cuts) if len(b)]


def _softmax_epoch(model: MF, opt: torch.optim.Optimizer, train: sp.csr_matrix, gen: torch.Generator,
                   batch_size: int, reg: float) -> float:
    """One pass over the positives with cross-entropy over the whole catalogue (every item a negative).

    The steps take whole users: a user's positives share one softmax over the catalogue, so each of their
    rows of logits is computed once (the loss equals the per-positive cross-entropy summed, at about
    1/(positives per user) of its cost); ``batch_size`` counts positives per step, as for BPR."""
    total = 0.0
    x = train.tocsr()
    for group in user_batches(x, gen, batch_size):
        u = torch.from_numpy(group.astype(np.int64))
        target = torch.from_numpy((x[group].toarray() > 0).astype(np.float32))
        table = model.item_tower(drop=True) if hasattr(model, "item_tower") else model.item.weight
        propagated = getattr(model, "_users", None)  # LightGCN: the user side of the same propagation
        user = propagated[u] if propagated is not None else model.user(u)
        logits = _dropped(model, user) @ table.T + model.item_bias.weight.T
        n = target.sum()
        loss = -(target * F.log_softmax(logits, dim=1)).sum() / n
        if reg:
            loss = loss + reg * ((user ** 2).sum(-1).mean() + (table ** 2).sum(-1).mean())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += float(loss.detach()) * float(n)
    return total


def fit_mse(model: MF, users: np.ndarray, items: np.ndarray, ratings: np.ndarray, *, epochs: int, batch_size: int,
            lr: float, reg: float, optimizer: str, seed: int, validate: Callable[[], float] | None,
            patience: int = 5) -> dict[str, Any]:
    """Biased MF on observed ratings: (r − μ − b_u − b_i − p_u·q_i)² + reg·(|p_u|² + |q_i|² + b_u² + b_i²).

    ``validate()`` returns an error (lower is better); without it all epochs run."""
    gen = torch.Generator().manual_seed(seed)
    u_t, i_t = torch.from_numpy(users.astype(np.int64)), torch.from_numpy(items.astype(np.int64))
    r_t = torch.from_numpy(ratings.astype(np.float32))
    with torch.no_grad():
        model.global_bias.fill_(float(r_t.mean()))
    opt = _optimizer(model, optimizer, lr, 0.0)
    best, best_epoch, best_state = float("inf"), 0, None
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(u_t), generator=gen)
        for b in range(0, len(order), batch_size):
            idx = order[b:b + batch_size]
            u, i = u_t[idx], i_t[idx]
            pred = model(u, i)
            loss = F.mse_loss(pred, r_t[idx])
            if reg:
                loss = loss + reg * ((model.user(u) ** 2).sum(-1) + (model.item(i) ** 2).sum(-1)
                                     + model.user_bias(u).squeeze(-1) ** 2 + model.item_bias(i).squeeze(-1) ** 2
                                     ).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if validate is None:
            continue
        model.eval()
        err = validate()
        if err < best:
            best, best_epoch, best_state = err, epoch, copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    return {"best_epoch": best_epoch or epochs, "best_val": best}


@torch.no_grad()
def predict_ratings(model: MF, users: np.ndarray, items: np.ndarray, scale: tuple[float, float] | None) -> np.ndarray:
    model.eval()
    pred = model(torch.from_numpy(users.astype(np.int64)), torch.from_numpy(items.astype(np.int64))).numpy()
    return np.clip(pred, *scale) if scale else pred
