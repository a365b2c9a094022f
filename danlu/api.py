"""The Python API behind every CLI verb: train, resume, evaluate."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from danlu.recipe import Recipe, load_recipe
from danlu.runs import atomic_write_text, hold_run, new_run_dir, read_json, read_run_recipe, resolve_run, write_json


@dataclass
class TrainResult:
    run: Path
    metrics: dict[str, float]  # test metrics
    wall_s: float
    report: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {"run": str(self.run), "metrics": self.metrics, "wall_s": round(self.wall_s, 3)}


def _env_info(device: str) -> dict[str, Any]:
    import torch

    info = {"python": platform.python_version(), "platform": platform.platform(), "torch": torch.__version__,
            "device": device, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    from danlu import __version__

    info["danlu"] = __version__
    return info


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


def train(recipe: str | Path | Recipe = "digits-mlp", overrides: list[str] | tuple[str, ...] = (), *,
          runs_dir: Path | None = None, data_dir: Path | None = None, resume: str | Path | None = None,
          progress: bool = True) -> TrainResult:
    """Train a recipe (or resume a run) and evaluate the best weights on the test split."""
    t0 = time.perf_counter()
    overrides = _override_list(overrides)
    if resume is not None:
        if overrides:
            from danlu.errors import DanluError

            raise DanluError(f"--resume continues a run exactly as it started; it takes no overrides "
                             f"({' '.join(overrides)})", hint="drop them, or start a new run with them")
        run_dir = resolve_run(resume, runs_dir)
        recipe = load_recipe(base=read_run_recipe(run_dir))
    elif not isinstance(recipe, Recipe):
        recipe = load_recipe(str(recipe), overrides)
    elif overrides:
        recipe = load_recipe(base=recipe.to_dict(), overrides=overrides)
    recipe = recipe.with_absolute_paths()
    # torch only now: a bad recipe (or a YAML bomb) is refused in a fraction of a second, not after its import
    from danlu.checkpoint import load_model_weights
    from danlu.evaluation import evaluate
    from danlu.progress import Progress
    from danlu.training import check_metric_names, fit, select_device

    splits, schema, model = prepare(recipe, data_dir)
    device = select_device(recipe.train.device)  # a device that is not there fails before the run folder exists
    check_metric_names(recipe, schema)
    if len(splits.train) < 2:
        from danlu.errors import DataError

        raise DataError(f"the training split has {len(splits.train)} sample(s); training needs at least 2",
                        hint="add data, or raise data.limit_train / lower data.val_fraction and data.test_fraction")
    say = Progress(0, 0, progress).note
    splits.notes.extend(_scarce_classes(splits.train, schema))
    for note in splits.notes:
        say(f"note: {note}")
    if resume is None:
        run_dir = new_run_dir(recipe.name, runs_dir)
        atomic_write_text(run_dir / "recipe.yaml", recipe.to_yaml())
        atomic_write_text(run_dir / "schema.json", schema.to_json())
        write_json(run_dir / "env.json", _env_info(str(device)))
        for writer in splits.artifacts.values():
            writer(run_dir)
        write_json(run_dir / "status.json", {"status": "training", "epoch": 0, "epochs": recipe.train.epoch_count})
    with hold_run(run_dir):  # no other process trains this run meanwhile; released however this ends
        say(f"run: {run_dir}")
        say(f"data: {schema.source}  train {len(splits.train)}  val {len(splits.val)}  test {len(splits.test)}")
        try:
            result = fit(model, splits, schema, recipe, run_dir, resume=resume is not None, show_progress=progress)
        except BaseException as e:
            write_json(run_dir / "status.json", {"status": "failed" if not isinstance(e, KeyboardInterrupt)
                                                 else "interrupted", "error": str(e)[:500]})
            raise
        load_model_weights(run_dir / "model.safetensors", model)
        done = {"epochs": len(result.history), "best_epoch": result.best_epoch, "stopped_early": result.stopped_early}
        write_json(run_dir / "status.json", {"status": "evaluating", **done})
        try:
            report = evaluate(run_dir, recipe, schema, model, splits.test, "test", notes=splits.notes)
        except BaseException as e:  # trained but not scored: `danlu evaluate RUN` can finish it
            write_json(run_dir / "status.json", {"status": "failed", **done, "error": f"evaluation: {str(e)[:480]}"})
            raise
        write_json(run_dir / "status.json", {"status": "done", **done})
    wall = time.perf_counter() - t0
    return TrainResult(run_dir, report["metrics"], wall, report)


def _override_list(overrides: Any) -> list[str]:
    """Overrides as a list of "key=value" strings; one string is one override (not its characters)."""
    from danlu.errors import RecipeError

    if isinstance(overrides, str):
        return [overrides]
    if isinstance(overrides, dict):
        raise RecipeError("overrides are a list of 'key=value' strings, not a dict",
                          hint='e.g. ["train.epochs=3", "train.lr=0.01"]')
    return [str(o) for o in overrides]


def _scarce_classes(train: Any, schema: Any, fewest: int = 5) -> list[str]:
    """A note naming the classes with fewer than ``fewest`` training samples: few enough to mislead."""
    import torch

    if schema.task != "classification" or not schema.classes:
        return []
    y = train.y if hasattr(train, "y") else torch.as_tensor(train.labels)
    counts = torch.bincount(y.long().reshape(-1), minlength=len(schema.classes)).tolist()
    scarce = [f"{c} ({n})" for c, n in zip(schema.classes, counts, strict=False) if n < fewest]
    if not scarce:
        return []
    shown = ", ".join(scarce[:5]) + (f" and {len(scarce) - 5} more" if len(scarce) > 5 else "")
    return [f"few training samples for class(es) {shown}: predictions for them will be unreliable"]


def load_run(run: str | Path, runs_dir: Path | None = None):
    """(run folder, recipe, schema) of a finished run."""
    from danlu.schema import Schema

    run_dir = resolve_run(run, runs_dir)
    recipe = load_recipe(base=read_run_recipe(run_dir))
    return run_dir, recipe, Schema.load(run_dir / "schema.json")


def evaluate(run: str | Path, split: str = "test", *, runs_dir: Path | None = None,
             data_dir: Path | None = None) -> dict[str, Any]:
    """Re-load a run's data split and best weights, and write its report."""
    from danlu.checkpoint import load_model_weights
    from danlu.errors import DanluError
    from danlu.evaluation import evaluate as run_evaluation

    if split not in ("train", "val", "test"):
        raise DanluError(f"unknown split '{split}'", hint="valid splits: train, val, test")
    run_dir, recipe, _ = load_run(run, runs_dir)
    splits, schema, model = prepare(recipe, data_dir, for_inference=True)
    saved = read_json(run_dir / "schema.json")
    if saved.get("classes") != schema.classes:
        raise DanluError(f"the data now has classes {schema.classes}, the run was trained on {saved.get('classes')}",
                         hint="evaluate on the same data the run was trained on")
    from danlu.schema import Schema

    schema = Schema.from_dict(saved)  # normalization etc. exactly as trained
    load_model_weights(run_dir / "model.safetensors", model)
    part = getattr(splits, split)
    if len(part) == 0:
        other = "test or train" if split == "val" else "another split"
        raise DanluError(f"the {split} split of this run's data is empty",
                         hint=f"evaluate {other}" + ("; train with data.val_fraction > 0 to carve a val split"
                                                     if split == "val" else ""))
    report = run_evaluation(run_dir, recipe, schema, model, part, split, notes=splits.notes)
    status = read_json(run_dir / "status.json") if (run_dir / "status.json").exists() else {}
    if split == "test" and str(status.get("error", "")).startswith("evaluation:"):  # training's last step, done now
        write_json(run_dir / "status.json", {k: v for k, v in status.items() if k != "error"} | {"status": "done"})
    return report

