"""From a recipe to split interaction matrices: the one place that reads, filters and splits the data."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from danlu.data.interactions import IdMap, Interactions, attach_item_table, load_movielens, read_interactions
from danlu.errors import DataError
from danlu.recipe import Recipe
from danlu.recipe_recommend import RecommendConfig
from danlu.recommend.split import Split, positives, split_interactions


def config_of(recipe: Recipe) -> RecommendConfig:
    return recipe.recommend or RecommendConfig()


def load_interactions(recipe: Recipe, data_dir: Path | None = None) -> Interactions:
    """The recipe's interactions: the movielens folder, or data.path (+ recommend.items) for any table."""
    cfg = config_of(recipe)
    if recipe.data.name == "movielens":
        from danlu.data.locate import find_dataset, where_looked

        folder = find_dataset("movielens", recipe.data.root, data_dir)
        if folder is None or not (folder / "ratings.csv").is_file():
            raise DataError("movielens not found (ratings.csv and movies.csv)",
                            hint=f"looked in {where_looked('movielens', data_dir)}; set data.root or DANLU_DATA")
        data = load_movielens(folder)
    else:
        if recipe.data.path is None:
            raise DataError("an interactions recipe needs data.path (a CSV, TSV or Parquet file of user, item[, "
                            "rating][, timestamp] rows)", hint="danlu train RECIPE data.path=events.csv")
        data = read_interactions(recipe.data.path, user_column=cfg.user_column, item_column=cfg.item_column,
                                 rating_column=cfg.rating_column, time_column=cfg.time_column,
                                 rating_scale=cfg.rating_scale)
        if cfg.items is not None:
            attach_item_table(data, cfg.items)
    if cfg.limit_users is not None and cfg.limit_users < data.n_users:
        data = first_users(data, cfg.limit_users)
    return data


def first_users(data: Interactions, n: int) -> Interactions:
    """The first ``n`` users (in table order) and only the items they touched, re-indexed."""
    keep = data.users < n
    items = data.items[keep]
    used = np.unique(items)
    remap = np.full(data.n_items, -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    info = {k: [v[i] for i in used] for k, v in data.item_info.items()}
    return Interactions(data.users[keep], remap[items], None if data.ratings is None else data.ratings[keep],
                        None if data.times is None else data.times[keep], IdMap(data.user_map.ids[:n]),
                        IdMap([data.item_map.ids[i] for i in used]), data.source,
                        [*data.notes, f"limited to the first {n} users ({len(used)} items)"], info)


@dataclass
class Prepared:
    """The positives and their split as users × items matrices (1 = a positive)."""

    data: Interactions
    rows: np.ndarray  # the rows of ``data`` that are positives
    split: Split
    train: sp.csr_matrix
    val: sp.csr_matrix
    test: sp.csr_matrix
    notes: list[str] = field(default_factory=list)

    @property
    def known_at_test(self) -> sp.csr_matrix:
        """What each user is known to have at test time (masked and used as history): train + val."""
        return ((self.train + self.val) > 0).astype(np.float32).tocsr()

    def train_counts(self) -> np.ndarray:
        return np.asarray(self.train.sum(0), dtype=np.float64).ravel()


def matrix(data: Interactions, rows: np.ndarray) -> sp.csr_matrix:
    return sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (data.users[rows], data.items[rows])),
                         shape=(data.n_users, data.n_items))


def prepare_ranking(data: Interactions, cfg: RecommendConfig, seed: int) -> Prepared:
    rows = positives(data, cfg.threshold())
    if len(rows) == 0:
        raise DataError(f"no interaction passes recommend.implicit={cfg.implicit!r}",
                        hint="lower the threshold, or use recommend.implicit=all")
    times = None if data.times is None else data.times[rows]
    split = split_interactions(data.users[rows], times, cfg.split, cfg.test_fraction, cfg.val_fraction, seed)
    parts = [matrix(data, rows[p]) for p in (split.train, split.val, split.test)]
    notes = [*data.notes, *split.notes]
    if cfg.implicit != "all":
        notes.append(f"implicit feedback: {len(rows)} of {len(data)} interactions have {cfg.implicit}")
    train_items = np.diff(parts[0].tocsc().indptr) > 0
    test_users = np.diff(parts[2].indptr) > 0
    no_history = int((test_users & (np.diff(parts[0].indptr) == 0)).sum())
    if no_history:
        notes.append(f"{no_history} test user(s) have no training history: they are scored from validation "
                     "items only, or skipped when they have none")
    cold = int((~train_items[parts[2].indices]).sum())
    if cold:
        notes.append(f"{cold} test interaction(s) are with items never seen in training (cold-start items): "
                     "they stay in the relevant set, so collaborative models cannot hit them")
    return Prepared(data, rows, split, *parts, notes)
