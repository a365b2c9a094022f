"""Recommendation as a task: interactions → protocol split → model → full-catalogue top-k report → predict.

Entry points: ``train.train_recommender`` (danlu train), ``predict.recommend`` (danlu predict --user/--items),
``describe.describe_interactions`` (danlu data describe). Kept light: submodules import numpy/torch.
"""

from __future__ import annotations

from typing import Any

RECOMMEND_DATA = ("movielens", "interactions")


def is_recommendation(recipe: Any) -> bool:
    """A recipe on a user-item table, or with a recommendation model or a ``recommend:`` block."""
    from danlu.models.recommend_specs import RECOMMENDERS

    return (recipe.data.name in RECOMMEND_DATA or recipe.model.name in RECOMMENDERS
            or getattr(recipe, "recommend", None) is not None)


def is_recommendation_run(run_dir: Any) -> bool:
    """A run folder written by danlu/recommend (its schema.json says kind "interactions")."""
    import json
    from pathlib import Path

    try:
        return json.loads((Path(run_dir) / "schema.json").read_text(encoding="utf-8")).get("kind") == "interactions"
    except (OSError, ValueError, AttributeError):
        return False
