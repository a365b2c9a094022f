"""Recipe → (splits, schema, model), and a finished run → (folder, recipe, schema).

Everything here reads user input and can fail on it, so it runs before any file is written. Training,
evaluation, export and the predictor all start from these two functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from danlu.recipe import Recipe, load_recipe
from danlu.runs.folder import load_schema
from danlu.runs.store import read_run_recipe, resolve_run
from danlu.schema import Schema


def inference_options(recipe: Recipe) -> dict[str, Any]:
    """Model options for rebuilding a trained model: no pretrained download, the run's weights follow."""
    opts = dict(recipe.model.options)
    if "weights" in opts:
        opts["weights"] = None
    return opts


def prepare(recipe: Recipe, data_dir: Path | None = None, for_inference: bool = False):
    """Seed, load the data, build the model: everything that can fail on user input, before any file is written."""
    import torch

    from danlu import data, models

    torch.manual_seed(recipe.seed)
    hints = models.input_hints(recipe.model.name, recipe.model.options)
    splits, schema = data.load(recipe.data, seed=recipe.seed, data_dir=data_dir, hints=hints)
    torch.manual_seed(recipe.seed)  # model init independent of how much randomness data loading used
    options = inference_options(recipe) if for_inference else recipe.model.options
    model = models.build(recipe.model.name, options, schema, training=not for_inference)
    return splits, schema, model


def load_run(run: str | Path, runs_dir: Path | None = None) -> tuple[Path, Recipe, Schema]:
    """(run folder, recipe, schema) of a trained run."""
    run_dir = resolve_run(run, runs_dir)
    recipe = load_recipe(base=read_run_recipe(run_dir))
    return run_dir, recipe, load_schema(run_dir / "schema.json")


def build_model(recipe: Recipe, schema: Schema) -> Any:
    """The run's architecture, rebuilt from its recipe and schema (weights are loaded after)."""
    from danlu.models import build

    return build(recipe.model.name, inference_options(recipe), schema, training=False)
