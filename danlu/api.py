"""The Python API behind every CLI verb: train, resume, evaluate."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from danlu.prepare import inference_options, load_run, prepare
from danlu.recipe import Recipe, load_recipe
from danlu.runs.store import read_run_recipe, resolve_run

__all__ = ["train", "evaluate", "prepare", "load_run", "inference_options", "TrainResult"]


@dataclass
class TrainResult:
    run: Path
    metrics: dict[str, float]  # test metrics
    wall_s: float
    report: dict[str, Any]
    status: str = "done"  # or "pruned" (a search stopped it; no test metrics)
    writer: bool = True  # False in the other ranks of a distributed run: rank 0 wrote and prints the run

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


def train(recipe: str | Path | Recipe = "digits-mlp", overrides: list[str] | tuple[str, ...] = (), *,
          runs_dir: Path | None = None, data_dir: Path | None = None, resume: str | Path | None = None,
          progress: bool = True, callbacks: list[Any] = (), run_dir: Path | None = None,
          plots: bool = True, resumable: bool = True) -> TrainResult:
    """Train a recipe (or resume a run) and evaluate the best weights on the test split.

    ``callbacks`` join the loop (danlu/training/callbacks.py); ``run_dir`` names the new run's folder instead of a
    time-stamped one under ``runs_dir`` (a search puts its trials there); ``resumable=False`` keeps no
    per-epoch training state (a search's trials are never resumed: a killed one is marked failed).
    """
    from danlu.errors import DanluError, DataError

    t0 = time.perf_counter()
    overrides = _override_list(overrides)
    if resume is not None:
        if overrides:
            raise DanluError(f"--resume continues a run exactly as it started; it takes no overrides "
                             f"({' '.join(overrides)})", hint="drop them, or start a new run with them")
        run_path = resolve_run(resume, runs_dir)
        recipe = load_recipe(base=read_run_recipe(run_path))
    elif not isinstance(recipe, Recipe):
        recipe = load_recipe(str(recipe), overrides)
    elif overrides:
        recipe = load_recipe(base=recipe.to_dict(), overrides=overrides)
    recipe = recipe.with_absolute_paths()
    # torch only now: a bad recipe (or a YAML bomb) is refused in a fraction of a second, not after its import
    from danlu.evaluation import evaluate
    from danlu.inference import select_device
    from danlu.runs.folder import RunFolder
    from danlu.training.loop import build_loop, check_metric_names, fit, standard_callbacks
    from danlu.training.progress import Progress

    group = _join_group(recipe)  # several processes (torchrun, srun, --nproc): danlu/training/distributed.py
    progress = progress and (group is None or group.writer)
    splits, schema, model = prepare(recipe, data_dir)
    # a device that is not there fails before the run folder exists
    device = group.device if group else select_device(recipe.train.device)
    check_metric_names(recipe, schema)
    if getattr(model, "fits_itself", False):
        _boosting_fits(recipe, group, resume)
    if recipe.train.privacy is not None:  # δ, ε and layers are checked (LSTMs made private) before any file
        from danlu.training.privacy import plan_privacy

        splits.notes.extend(plan_privacy(recipe, model, splits.train).notes)
    teacher = None
    if recipe.train.distill is not None:  # checked against this data before any file is written
        from danlu.training.distill import load_teacher

        teacher = load_teacher(recipe.train.distill, schema, runs_dir)
    if len(splits.train) < 2:
        raise DataError(f"the training split has {len(splits.train)} sample(s); training needs at least 2",
                        hint="add data, or raise data.limit_train / lower data.val_fraction and data.test_fraction")
    say = Progress(0, 0, progress).note
    splits.notes.extend(_scarce_classes(splits.train, schema))
    for note in splits.notes:
        say(f"note: {note}")

    def create_run() -> RunFolder:
        new = RunFolder(_fresh_folder(run_dir)) if run_dir is not None else RunFolder.create(recipe.name, runs_dir)
        new.write_setup(recipe, schema, {**_env_info(str(device)), **(group.describe() if group else {})},
                        splits.artifacts)
        new.set_status("training", epoch=0, epochs=recipe.train.epoch_count,
                       **({} if resumable else {"resumable": False}))
        return new

    if resume is not None:
        run = RunFolder(run_path, writer=group is None or group.writer)
    else:
        run = create_run() if group is None else group.open_run(create_run)
    if teacher is not None and (group is None or group.writer):  # rank 0 writes the run folder
        teacher.record(run.path, resumed=resume is not None)
    with run.lock():  # no other process trains this run meanwhile; released however this ends
        say(f"run: {run.path}")
        say(f"data: {schema.source}  train {len(splits.train)}  val {len(splits.val)}  test {len(splits.test)}")
        try:
            # an unreachable tracking server fails the run here; rank 0 alone tracks a distributed run
            tracked = _trackers(recipe, run.path) if run.writer else []
            if getattr(model, "fits_itself", False):  # boosted trees: LightGBM's own loop (danlu/training/boosted.py)
                from danlu.training.boosted import fit_boosted

                loop = fit_boosted(model, splits, schema, recipe, run, say=say, callbacks=[*callbacks, *tracked])
                best_epoch = loop.best_epoch
            else:
                cbs = standard_callbacks(recipe, schema, len(splits.val) > 0, run, resume=resume is not None,
                                         progress=progress, extra=[*callbacks, *tracked], resumable=resumable)
                loop = build_loop(model, splits, schema, recipe, cbs)
                if teacher is not None:
                    loop.step = teacher.wrap(loop.step, loop.device)
                fit(group.wrap(loop) if group else loop)
                best_epoch = cbs[-1].best_epoch
        except BaseException as e:
            e = group.explain(e, run) if group else e  # a peer that died: say how to resume
            run.update_status("interrupted" if isinstance(e, KeyboardInterrupt) else "failed",
                              failed_in="training", error=str(e)[:500])
            raise e
        done = {"epochs": len(loop.history), "best_epoch": best_epoch,
                "stopped_early": loop.stop is not None, **({} if resumable else {"resumable": False})}
        if loop.stop is not None:
            done["stop_reason"] = loop.stop.reason
        if loop.privacy is not None:
            done["privacy"] = loop.privacy.summary()
        if loop.stop is not None and loop.stop.status == "pruned":
            run.set_status("pruned", **done)
            _finish_tracking(tracked, None, "pruned")
            return TrainResult(run.path, {}, time.perf_counter() - t0, {}, "pruned", run.writer)
        group.load_best(run, model) if group else run.load_model(model)
        run.set_status("evaluating", **done)
        try:
            report = evaluate(run, recipe, schema, model, splits.test, "test", notes=splits.notes,
                              plots=plots and run.writer, parity=run.writer, score=group and group.evaluate)
        except BaseException as e:  # trained but not scored: `danlu evaluate RUN` can finish it
            run.set_status("failed", **done, failed_in="evaluation", error=str(e)[:480])
            _finish_tracking(tracked, None, "failed")
            raise
        run.set_status("done", **done)
        _finish_tracking(tracked, report, "done")
        if teacher is not None and run.writer and len(splits.test):  # teacher vs student, as compress's tables
            teacher.write_table(run.path, splits.test)
    if group:
        group.close()
    return TrainResult(run.path, report["metrics"], time.perf_counter() - t0, report, writer=run.writer)


def _boosting_fits(recipe: Recipe, group: Any, resume: Any) -> None:
    """Boosted trees train in LightGBM's own loop: the nets' plug-ins do not apply to it."""
    from danlu.errors import DanluError

    model = recipe.model.name
    for on, what in ((recipe.train.privacy is not None, "train.privacy (DP-SGD)"),
                     (recipe.train.distill is not None, "train.distill"), (group is not None, "distributed training"),
                     (resume is not None, "--resume")):
        if on:
            raise DanluError(f"model '{model}' (gradient-boosted trees) does not take {what}",
                             hint="train it without that, or use a neural model (model.name=tabular_net or mlp)")


def _join_group(recipe: Recipe) -> Any:
    """The process group when this is one of several processes, else None (danlu/training/distributed.py)."""
    if not ({"WORLD_SIZE", "SLURM_PROCID"} & set(os.environ)):  # one process: torch.distributed stays unloaded
        return None
    from danlu.training.distributed import start

    return start(recipe)


def _trackers(recipe: Recipe, run_dir: Path) -> list[Any]:
    """TensorBoard / MLflow callbacks when the recipe's train.track names them (danlu/training/tracking.py)."""
    if not recipe.train.track:
        return []
    from danlu.training.tracking import trackers

    return trackers(recipe, run_dir)


def _finish_tracking(tracked: list[Any], report: dict[str, Any] | None, status: str) -> None:
    if tracked:
        from danlu.training.tracking import finish

        finish(tracked, report, status)


def _fresh_folder(path: Path) -> Path:
    """An explicit run folder: created, or reused only while it holds no run yet."""
    from danlu.errors import RunError

    path = Path(path)
    if (path / "recipe.yaml").exists():
        raise RunError(f"{path} already holds a run", hint="give another folder, or resume it: --resume")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunError(f"cannot create the run folder {path}: {e.strerror or e}") from None
    return path.resolve()


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


def evaluate(run: str | Path, split: str = "test", *, runs_dir: Path | None = None,
             data_dir: Path | None = None) -> dict[str, Any]:
    """Re-load a run's data split and best weights, and write its report."""
    from danlu.errors import DanluError
    from danlu.evaluation import evaluate as run_evaluation
    from danlu.runs.folder import RunFolder

    if split not in ("train", "val", "test"):
        raise DanluError(f"unknown split '{split}'", hint="valid splits: train, val, test")
    run_dir, recipe, saved = load_run(run, runs_dir)
    splits, schema, model = prepare(recipe, data_dir, for_inference=True)
    if saved.classes != schema.classes:
        raise DanluError(f"the data now has classes {schema.classes}, the run was trained on {saved.classes}",
                         hint="evaluate on the same data the run was trained on")
    folder = RunFolder(run_dir)
    folder.load_model(model)
    part = getattr(splits, split)
    if len(part) == 0:
        other = "test or train" if split == "val" else "another split"
        raise DanluError(f"the {split} split of this run's data is empty",
                         hint=f"evaluate {other}" + ("; train with data.val_fraction > 0 to carve a val split"
                                                     if split == "val" else ""))
    report = run_evaluation(folder, recipe, saved, model, part, split, notes=splits.notes, parity=split == "test")
    status = folder.status()
    if split == "test" and status.get("status") == "failed" and status.get("failed_in") == "evaluation":
        folder.update_status("done")  # training's last step, done now
    return report
