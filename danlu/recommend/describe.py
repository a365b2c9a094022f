"""`danlu data describe` for interaction data: sizes, density, long tails, ratings, time, cold start."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

from danlu.recipe import Recipe


def _percentiles(counts: np.ndarray) -> str:
    q = np.percentile(counts, [0, 25, 50, 75, 90, 99, 100])
    return "  ".join(f"{name} {v:.0f}" for name, v in zip(("min", "p25", "p50", "p75", "p90", "p99", "max"), q,
                                                            strict=True))


def describe_if_interactions(recipe_name: str, overrides: list[str], data_dir: Path | None) -> str | None:
    """The description of a recommendation recipe's data; None for recipes of other tasks."""
    from danlu.recipe import load_recipe
    from danlu.recommend import is_recommendation

    recipe = load_recipe(recipe_name, overrides)
    return describe_interactions(recipe, data_dir) if is_recommendation(recipe) else None


def describe_interactions(recipe: Recipe, data_dir: Path | None = None) -> str:
    from danlu.recommend.data import config_of, load_interactions, prepare_ranking

    cfg = config_of(recipe)
    data = load_interactions(recipe, data_dir)
    per_user = np.bincount(data.users, minlength=data.n_users)
    per_item = np.bincount(data.items, minlength=data.n_items)
    lines = [f"data: {data.source} (interactions)",
             f"users {data.n_users}  items {data.n_items}  interactions {len(data)}  "
             f"density {len(data) / (data.n_users * data.n_items):.2%}",
             f"interactions per user: {_percentiles(per_user)}",
             f"interactions per item: {_percentiles(per_item)}  (items with one: {int((per_item == 1).sum())}, "
             f"{(per_item == 1).mean():.0%})"]
    rated = data.ratings[~np.isnan(data.ratings)] if data.ratings is not None else None
    if rated is not None and len(rated):
        values, counts = np.unique(rated, return_counts=True)
        hist = "  ".join(f"{v:g}: {c}" for v, c in zip(values, counts, strict=True)) if len(values) <= 12 else (
            f"{len(values)} distinct values")
        blank = len(data.ratings) - len(rated)
        lines.append(f"ratings: mean {rated.mean():.3f}  sd {rated.std():.3f}  histogram {hist}"
                     + (f"  (unrated {blank})" if blank else ""))
    if data.times is not None:
        first, last = (dt.datetime.fromtimestamp(int(t), dt.UTC).date() for t in
                       (data.times.min(), data.times.max()))
        lines.append(f"time range: {first} to {last}")
    if data.item_info:
        lines.append(f"item side features: {', '.join(data.item_info)}")
    prepared = prepare_ranking(data, cfg, recipe.seed)
    lines.append(f"split: {prepared.split.description}")
    lines.append(f"implicit positives ({cfg.implicit}): train {prepared.train.nnz}  val {prepared.val.nnz}  "
                 f"test {prepared.test.nnz}")
    train_items = np.diff(prepared.train.tocsc().indptr) > 0
    train_users = np.diff(prepared.train.indptr) > 0
    for name, part in (("val", prepared.val), ("test", prepared.test)):
        users = np.diff(part.indptr) > 0
        cold_items = np.unique(part.indices[~train_items[part.indices]])
        lines.append(f"cold start in {name}: {int((users & ~train_users).sum())} user(s) without training history, "
                     f"{len(cold_items)} item(s) never in training ({int((~train_items[part.indices]).sum())} "
                     "interactions)")
    lines += [f"note: {n}" for n in prepared.notes]
    return "\n".join(lines)
