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
    """A run folder written by danlu/recommend (its schema.json says kind "interactions"); read through the
    run-file guards (no FIFO, device or link out of the folder), and False for anything unreadable."""
    from pathlib import Path

    from danlu.errors import DanluError
    from danlu.runs.files import read_json_file

    try:
        schema = read_json_file(Path(run_dir) / "schema.json", within=Path(run_dir))
    except (DanluError, OSError, ValueError):
        return False
    return isinstance(schema, dict) and schema.get("kind") == "interactions"
