"""Explicit rating prediction (recommend.task: rating): k-fold cross-validated RMSE / MAE, as Surprise's tables.

Each fold holds out 1/k of the ratings at random. Beside the recipe's model, the user + item bias baseline
(μ + b_u + b_i, regularized alternating means like Surprise's BaselineOnly ALS: λ_u 15, λ_i 10, 10 rounds) is
scored on the same folds. MF picks its epoch on 10 % of each fold's training ratings; the saved model is
then trained on all ratings for the median best epoch.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from danlu.errors import DataError
from danlu.recipe import Recipe
from danlu.recommend.data import config_of
from danlu.recommend.metrics import rating_errors


def bias_baseline(users: np.ndarray, items: np.ndarray, ratings: np.ndarray, n_users: int, n_items: int,
                  reg_u: float = 15.0, reg_i: float = 10.0, rounds: int = 10) -> tuple[float, np.ndarray, np.ndarray]:
    """μ, b_u, b_i by alternating regularized means."""
    mu = float(ratings.mean())
    bu, bi = np.zeros(n_users), np.zeros(n_items)
    n_u = np.bincount(users, minlength=n_users)
    n_i = np.bincount(items, minlength=n_items)
    for _ in range(rounds):
        bi = np.bincount(items, weights=ratings - mu - bu[users], minlength=n_items) / (reg_i + n_i)
        bu = np.bincount(users, weights=ratings - mu - bi[items], minlength=n_users) / (reg_u + n_u)
    return mu, bu, bi


def _fit_mf(recipe: Recipe, n_users: int, n_items: int, u: np.ndarray, i: np.ndarray, r: np.ndarray, seed: int,
            epochs: int | None, scale: tuple[float, float] | None) -> tuple[Any, int, float]:
    """Biased MF on these ratings; with ``epochs`` None, 10 % of them pick the epoch (and its RMSE there)."""
    import torch

    from danlu.recommend.build import build
    from danlu.recommend.fit import fit_mse, predict_ratings

    torch.manual_seed(seed)
    model = build(recipe, n_users, n_items)
    tr, o = recipe.train, recipe.model.options
    validate, fit_rows = None, np.arange(len(r))
    if epochs is None:
        perm = np.random.default_rng(seed).permutation(len(r))
        hold, fit_rows = perm[:len(r) // 10], perm[len(r) // 10:]

        def validate() -> float:
            return rating_errors(predict_ratings(model, u[hold], i[hold], scale), r[hold])["rmse"]

    info = fit_mse(model, u[fit_rows], i[fit_rows], r[fit_rows], epochs=epochs or int(tr.epoch_count),
                   batch_size=tr.batch_size, lr=tr.lr, reg=o.get("reg", 0.0), optimizer=tr.optimizer, seed=seed,
                   validate=validate, patience=tr.early_stop.patience if tr.early_stop else 3)
    return model, info["best_epoch"], info["best_val"]


def train_rating(recipe: Recipe, data: Any, *, runs_dir: Path | None, run_dir: Path | None, say: Any,
                 callbacks: Any = (), resume: Path | None = None) -> tuple[Path, dict[str, Any], dict[str, Any], str]:
    """Cross-validate, train the saved model on all ratings, write the run; (run folder, metrics, report, state).

    val_rmse is the mean of the folds' epoch-picking hold-outs (10 % of each fold's training ratings; the
    folds' test parts are never looked at): callbacks see its running mean after each fold (a search prunes on
    it), metrics.jsonl gets one row, the mean over all folds (what a search scores). A resumed run
    cross-validates again from the first fold: every fold is seeded, so it ends the same."""
    from danlu.recommend import store
    from danlu.recommend.fit import predict_ratings
    from danlu.recommend.hooks import EpochHooks
    from danlu.runs.lifecycle import fail_run, finish_run

    cfg = config_of(recipe)
    if data.ratings is None:
        raise DataError(f"recommend.task=rating needs ratings, and {data.source} has none",
                        hint="name the rating column (recommend.rating_column=...), or use recommend.task=ranking")
    if recipe.model.name != "mf":
        raise DataError(f"recommend.task=rating takes model mf (biased MF) here, not {recipe.model.name}",
                        hint="model.name=mf; the bias baseline is always reported beside it")
    rated = ~np.isnan(data.ratings)  # interactions without a rating have nothing to fit here (noted on reading)
    u, i, r = data.users[rated], data.items[rated], data.ratings[rated].astype(np.float64)
    if len(r) == 0:
        raise DataError(f"recommend.task=rating needs ratings, and every rating cell in {data.source} is blank",
                        hint="name the rating column (recommend.rating_column=...), or use recommend.task=ranking")
    scale = cfg.rating_scale or (float(r.min()), float(r.max()))
    folds = np.random.default_rng(recipe.seed).permutation(len(r)) % cfg.folds
    schema = {"task": "rating", "model": recipe.model.name, "features": None, "explains": False}
    folder = store.reopen(resume, data, schema) if resume is not None else store.start(recipe, data, schema,
                                                                                       runs_dir, run_dir)
    say(f"run: {folder.path}")
    per_fold: list[dict[str, Any]] = []
    hooks, val = EpochHooks(folder, callbacks, cfg.folds), []
    if resume is not None:
        folder.rewrite_metrics([])
    with folder.lock():  # no other process resumes this run meanwhile
        try:
            for f in range(cfg.folds):
                train, test = folds != f, folds == f
                mu, bu, bi = bias_baseline(u[train], i[train], r[train], data.n_users, data.n_items)
                base = np.clip(mu + bu[u[test]] + bi[i[test]], *scale)
                row = {"fold": f + 1, "baseline": rating_errors(base, r[test])}
                if recipe.model.name == "mf":
                    t = time.perf_counter()
                    model, best, picked = _fit_mf(recipe, data.n_users, data.n_items, u[train], i[train], r[train],
                                                  recipe.seed + f, None, scale)
                    val.append(picked)
                    row["model"] = rating_errors(predict_ratings(model, u[test], i[test], scale), r[test])
                    row["best_epoch"], row["seconds"] = best, round(time.perf_counter() - t, 2)
                per_fold.append(row)
                say(f"fold {f + 1}/{cfg.folds}: " + "  ".join(
                    f"{k} rmse {v['rmse']:.4f}" for k, v in row.items() if isinstance(v, dict)))
                last = f == cfg.folds - 1  # metrics.jsonl: one row, the mean over all folds
                if hooks({"epoch": f + 1, "val_rmse": float(np.mean(val)), "seconds": row.get("seconds")}, log=last) \
                        and hooks.stop.status == "pruned":
                    finish_run(folder, "pruned", stopped=hooks.stop.reason)
                    return folder.path, {}, {}, "pruned"
            summary = {}
            for part in ("baseline", "model"):
                if part not in per_fold[0]:
                    continue
                for m in ("rmse", "mae"):
                    vals = [row[part][m] for row in per_fold]
                    summary[f"{part}_{m}"] = round(float(np.mean(vals)), 5)
                    summary[f"{part}_{m}_sd"] = round(float(np.std(vals)), 5)
            if recipe.model.name == "mf":
                epochs = int(np.median([row["best_epoch"] for row in per_fold]))
                model, _, _ = _fit_mf(recipe, data.n_users, data.n_items, u, i, r, recipe.seed, epochs, scale)
                known = sp.csr_matrix((np.ones(len(u), dtype=np.float32), (u, i)), shape=(data.n_users, data.n_items))
                store.save_weights(folder.path, model, recipe, known)
        except BaseException as e:
            fail_run(folder, e, "training")
            raise
        metrics = {"rmse": summary.get("model_rmse", summary["baseline_rmse"]),
                   "mae": summary.get("model_mae", summary["baseline_mae"]), **summary}
        report = {"task": "rating", "model": recipe.model.name, "source": data.source,
                  "protocol": {"folds": cfg.folds, "description": f"{cfg.folds}-fold cross-validation over all ratings "
                               "(random folds, as Surprise's cross_validate); predictions clipped to "
                               f"[{scale[0]:g}, {scale[1]:g}]"},
                  "metrics": metrics, "folds": per_fold, "notes": data.notes}
        lines = [f"# {recipe.model.name} rating prediction on {data.source}", "",
                 report["protocol"]["description"] + ".", "", "| model | RMSE | MAE |", "|---|---|---|"]
        for part, name in (("model", recipe.model.name + " (biased MF)"), ("baseline", "user + item bias")):
            if f"{part}_rmse" in summary:
                lines.append(f"| {name} | {summary[f'{part}_rmse']:.4f} ± {summary[f'{part}_rmse_sd']:.4f} | "
                             f"{summary[f'{part}_mae']:.4f} ± {summary[f'{part}_mae_sd']:.4f} |")
        folder.write_report("report", report, "\n".join(lines) + "\n")
        finish_run(folder, "done")
        return folder.path, metrics, report, "done"
