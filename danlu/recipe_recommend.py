"""The ``recommend:`` block of a recipe: where the interactions are and how they are split and scored.

Its own module so the recipe core stays small; pydantic only (no torch), like the rest of the recipe.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SPLITS = ("temporal", "leave_last_one_out", "random")


class RecommendConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=(), allow_inf_nan=False)

    task: Literal["ranking", "rating"] = "ranking"  # top-k from implicit feedback, or rating prediction
    items: Path | None = None  # item side table (title, genres, year); movielens: movies.csv
    user_column: str = "auto"  # the column of user ids; auto: the first common name (user, userId, user_id, ...)
    item_column: str = "auto"  # the column of item ids; auto: item, itemId, movieId, product_id, sku, ...
    rating_column: str | None = "auto"  # null: implicit-only data
    time_column: str | None = "auto"  # Unix seconds or ISO dates; null: no time (only the random split works)
    rating_scale: tuple[float, float] | None = None  # ratings outside it are refused
    implicit: str = "all"  # which ratings count as a positive: "all" or a threshold such as "rating >= 4"
    # temporal: each user's last test_fraction is test, the val_fraction before it val (no future in train);
    # leave_last_one_out: each user's last interaction is test, the one before val; random: leaks the future
    split: Literal["temporal", "leave_last_one_out", "random"] = "temporal"
    test_fraction: float = Field(0.2, gt=0, lt=1)  # each user's share of interactions held out for test
    val_fraction: float = Field(0.1, ge=0, lt=1)  # each user's share before the test part, for validation
    k: list[int] = Field(default_factory=lambda: [10, 20])  # cut-offs of Recall@k, NDCG@k, HR@k, coverage
    # MF / two-tower: once validation has picked the epoch count, train again on train + validation for that
    # many epochs, so the model knows what the test ranking uses as each user's history
    refit: bool = True
    folds: int = Field(5, ge=2, le=20)  # rating task: k-fold cross-validation
    limit_users: int | None = Field(None, ge=2)  # keep the first N users (quick runs, CI)
    # top-k at predict/serve time for MF / two-tower: exact (every item scored), faiss (an approximate inverted-
    # file index, `pip install danlu[faiss]`), auto: faiss past 1 M items when it is installed, else exact
    index: Literal["auto", "exact", "faiss"] = "auto"
    index_probes: int = Field(32, ge=1)  # faiss: clusters searched per query (more: closer to exact, slower)

    @field_validator("implicit")
    @classmethod
    def _threshold(cls, v: str) -> str:
        v = v.strip()
        if v != "all" and not re.fullmatch(r"rating\s*>=\s*-?\d+(\.\d+)?", v):
            raise ValueError(f"recommend.implicit is 'all' or a threshold like 'rating >= 4', got {v!r}")
        return v

    @field_validator("k")
    @classmethod
    def _cutoffs(cls, v: list[int]) -> list[int]:
        if not v or any(k < 1 for k in v):
            raise ValueError("recommend.k lists cut-offs of at least 1, e.g. [10, 20]")
        return sorted(set(v))

    @model_validator(mode="after")
    def _room_for_training(self) -> RecommendConfig:
        if self.test_fraction + self.val_fraction >= 0.9:
            raise ValueError("recommend.test_fraction + val_fraction must leave training data (< 0.9)")
        if self.rating_scale is not None and self.rating_scale[0] >= self.rating_scale[1]:
            raise ValueError("recommend.rating_scale is [low, high] with low < high")
        return self

    def threshold(self) -> float | None:
        """The rating a positive needs (None: every interaction is a positive)."""
        if self.implicit == "all":
            return None
        return float(self.implicit.split(">=")[1])
