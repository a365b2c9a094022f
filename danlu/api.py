"""The Python API behind every CLI verb: train, resume, evaluate."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from danlu.prepare import inference_options, load_run, prepare
from danlu.recipe import Recipe, load_recipe
from danlu.runs.lifecycle import finish_run
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


def train(recipe: str | Path | Recipe = "digits-mlp", overrides: list[str] | tuple[str, ...] = (), *,
          runs_dir: Path | None = None, data_dir: Path | None = None, resume: str | Path | None = None,
          progress: bool = True, callbacks: list[Any] = (), run_dir: Path | None = None,
          plots: bool = True, resumable: bool = True) -> TrainResult:
    """Train a recipe (or resume a run) and evaluate the best weights on the test split.

    ``callbacks`` join the loop (danlu/training/hooks.py); ``run_dir`` names the new run's folder instead of
    a time-stamped one under ``runs_dir`` (a search puts its trials there); ``resumable=False`` keeps no
    per-epoch training state (a search's trials are never resumed: a killed one is marked failed).
    """
    t0 = time.perf_counter()
    recipe, resume_path = _resolve_recipe(recipe, _override_list(overrides), resume, runs_dir)
    from danlu.recommend import is_recommendation

    if is_recommendation(recipe):  # user-item tables: their own fit and report (danlu/recommend/)
        return _train_recommender(recipe, resume_path, runs_dir, data_dir, run_dir, progress, plots, list(callbacks),
                                  resumable)
    job = _Job.check(recipe, data_dir, runs_dir, progress)  # everything that can fail on user input
    if getattr(job.model, "fits_itself", False):
        _boosting_fits(recipe, job.group, resume)
    run = job.open_run(resume_path, run_dir, runs_dir, resumable)
    with run.lock():  # no other process trains this run meanwhile; released however this ends
        job.say(f"run: {run.path}")
        job.say(f"data: {job.schema.source}  train {len(job.splits.train)}  val {len(job.splits.val)}  "
                f"test {len(job.splits.test)}")
        loop, tracked, recorder = job.fit(run, resume_path is not None, list(callbacks), resumable)
        done = _end_of_training(loop, recorder, resumable)
        if loop.stop is not None and loop.stop.status == "pruned":
            finish_run(run, "pruned", **done)
            _finish_tracking(tracked, None, "pruned")
            return TrainResult(run.path, {}, time.perf_counter() - t0, {}, "pruned", run.writer)
        report = job.evaluate(run, loop.model, done, tracked, plots)
        finish_run(run, "done", **done)
        _finish_tracking(tracked, report, "done")
    if job.group:
        job.group.close()
    return TrainResult(run.path, report["metrics"], time.perf_counter() - t0, report, writer=run.writer)


def _train_recommender(recipe: Recipe, resume_path: Any, runs_dir: Path | None, data_dir: Path | None,
                       run_dir: Path | None, progress: bool, plots: bool, callbacks: list[Any],
                       resumable: bool) -> TrainResult:
    from danlu.recommend.train import train_recommender

    done = train_recommender(recipe, runs_dir=runs_dir, data_dir=data_dir, run_dir=run_dir, progress=progress,
                             plots=plots, callbacks=callbacks, resume=resume_path, resumable=resumable)
    return TrainResult(done.run, done.metrics, done.wall_s, done.report, done.status, done.writer)


def _write_voices(model: Any, run: Any) -> None:
    """voices.json: tone_net's per-voice pitch statistics (pitch_norm=voice), beside the weights that hold them."""
    table = model.voice_table() if hasattr(model, "voice_table") else []
    if table and run.writer:
        import json

        from danlu.runs.files import atomic_write_text

        atomic_write_text(run.path / "voices.json", json.dumps({"voices": table}, indent=2) + "\n")


def _resolve_recipe(recipe: Any, overrides: list[str], resume: Any, runs_dir: Path | None) -> tuple[Recipe, Any]:
    """The recipe to train, with paths made absolute; a resumed run's own (and its folder)."""
    from danlu.errors import DanluError

    run_path = None
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
    return recipe.with_absolute_paths(), run_path


class _Job:
    """One training job between its checks and its report: data, model, device, process group, teacher."""

    def __init__(self, recipe: Recipe, splits: Any, schema: Any, model: Any, device: Any, group: Any,
                 teacher: Any, say: Any, progress: bool):
        self.recipe, self.splits, self.schema, self.model = recipe, splits, schema, model
        self.device, self.group, self.teacher, self.say, self.progress = device, group, teacher, say, progress

    @classmethod
    def check(cls, recipe: Recipe, data_dir: Path | None, runs_dir: Path | None, progress: bool) -> _Job:
        """Data, model, device, privacy plan and teacher, all checked before any file is written."""
        # torch only now: a bad recipe (or a YAML bomb) is refused in a fraction of a second, not after its import
        from danlu.errors import DataError
        from danlu.inference import select_device
        from danlu.training.loop import check_metric_names
        from danlu.training.progress import Progress

        group = _join_group(recipe)  # several processes (torchrun, srun, --nproc): danlu/training/distributed.py
        progress = progress and (group is None or group.writer)
        splits, schema, model = prepare(recipe, data_dir)
        device = group.device if group else select_device(recipe.train.device)  # a missing device fails here
        check_metric_names(recipe, schema)
        if recipe.train.privacy is not None:  # δ, ε and layers are checked (LSTMs made private) before any file
            from danlu.training.privacy import plan_privacy

            splits.notes.extend(plan_privacy(recipe, model, splits.train).notes)
        teacher = None
        if recipe.train.distill is not None:  # checked against this data before any file is written
            from danlu.training.distill import load_teacher

            teacher = load_teacher(recipe.train.distill, schema, runs_dir)
        if len(splits.train) < 2:
            raise DataError(f"the training split has {len(splits.train)} sample(s); training needs at least 2",
                            hint="add data, or raise data.limit_train / lower data.val_fraction and "
                                 "data.test_fraction")
        say = Progress(0, 0, progress).note
        splits.notes.extend(_scarce_classes(splits.train, schema))
        for note in splits.notes:
            say(f"note: {note}")
        return cls(recipe, splits, schema, model, device, group, teacher, say, progress)

    def open_run(self, resume_path: Any, run_dir: Path | None, runs_dir: Path | None, resumable: bool) -> Any:
        """The resumed run's folder, or a new one started through the run lifecycle (rank 0 writes it)."""
        from danlu.runs.folder import RunFolder
        from danlu.runs.lifecycle import environment, start_run

        group = self.group
        if resume_path is not None:
            run = RunFolder(resume_path, writer=group is None or group.writer)
        else:
            def create() -> RunFolder:
                env = environment(str(self.device), **(group.describe() if group else {}))
                return start_run(self.recipe, self.schema, env, self.splits.artifacts, runs_dir=runs_dir,
                                 run_dir=run_dir, epoch=0, epochs=self.recipe.train.epoch_count,
                                 **({} if resumable else {"resumable": False}))

            run = create() if group is None else group.open_run(create)
        if self.teacher is not None and run.writer:
            self.teacher.record(run.path, resumed=resume_path is not None)
        return run

    def fit(self, run: Any, resumed: bool, callbacks: list[Any], resumable: bool) -> tuple[Any, list[Any], Any]:
        """The loop with the standard callbacks, trackers and plug-ins; a failure marks the run and goes up."""
        from danlu.runs.lifecycle import fail_run
        from danlu.training.loop import build_loop, fit, standard_callbacks

        recipe, group = self.recipe, self.group
        try:
            # an unreachable tracking server fails the run here; rank 0 alone tracks a distributed run
            tracked = _trackers(recipe, run.path) if run.writer else []
            if getattr(self.model, "assembles", False):  # a table ensemble: its members' trained weights
                from danlu.training.assemble import assemble

                loop = assemble(self.model, self.splits, self.schema, recipe, run, say=self.say)
                return loop, tracked, loop
            if getattr(self.model, "fits_itself", False):  # boosted trees: LightGBM's own loop
                from danlu.training.boosted import fit_boosted

                loop = fit_boosted(self.model, self.splits, self.schema, recipe, run, say=self.say,
                                   callbacks=[*callbacks, *tracked])
                return loop, tracked, loop  # the loop knows its best round, as the nets' recorder its best epoch
            cbs = standard_callbacks(recipe, self.schema, len(self.splits.val) > 0, run, resume=resumed,
                                     progress=self.progress, extra=[*callbacks, *tracked], resumable=resumable)
            if not resumed and self.splits.unlabelled is not None and hasattr(self.model, "adapt"):
                self.model.adapt(self.splits.unlabelled)  # measured on inputs without labels (data.adapt)
            loop = build_loop(self.model, self.splits, self.schema, recipe, cbs)
            if self.teacher is not None:
                loop.step = self.teacher.wrap(loop.step, loop.device)
            fit(group.wrap(loop) if group else loop)
            _write_voices(self.model, run)
        except BaseException as e:
            e = group.explain(e, run) if group else e  # a peer that died: say how to resume
            fail_run(run, e, "training")
            raise e
        return loop, tracked, cbs[-1]

    def evaluate(self, run: Any, model: Any, done: dict[str, Any], tracked: list[Any], plots: bool) -> dict:
        """The best weights on the test split; trained but not scored, `danlu evaluate RUN` can finish it."""
        from danlu.evaluation import evaluate
        from danlu.runs.lifecycle import fail_run

        group = self.group
        group.load_best(run, model) if group else run.load_model(model)
        run.set_status("evaluating", **done)
        try:
            return evaluate(run, self.recipe, self.schema, model, self.splits.test, "test", notes=self.splits.notes,
                            plots=plots and run.writer, parity=run.writer, score=group and group.evaluate)
        except BaseException as e:
            fail_run(run, e, "evaluation", **done)
            _finish_tracking(tracked, None, "failed")
            raise


def _boosting_fits(recipe: Recipe, group: Any, resume: Any) -> None:
    """Boosted trees train in LightGBM's own loop: the nets' plug-ins do not apply to it."""
    from danlu.errors import DanluError

    model = recipe.model.name
    for on, what in ((recipe.train.privacy is not None, "train.privacy (DP-SGD)"),
                     (recipe.train.distill is not None, "train.distill"), (group is not None, "distributed training"),
                     (resume is not None, "--resume")):
        if on:
            kind = "an ensemble" if model == "table_ensemble" else "gradient-boosted trees"
            raise DanluError(f"model '{model}' ({kind}) does not take {what}",
                             hint="train it without that, or use a neural model (model.name=tabular_net or mlp)")


def _end_of_training(loop: Any, recorder: Any, resumable: bool) -> dict[str, Any]:
    """The status fields a trained run keeps: epochs, best epoch, why it stopped, its privacy budget."""
    done = {"epochs": len(loop.history), "best_epoch": recorder.best_epoch, "stopped_early": loop.stop is not None,
            **({} if resumable else {"resumable": False})}
    if loop.stop is not None:
        done["stop_reason"] = loop.stop.reason
    if loop.privacy is not None:
        done["privacy"] = loop.privacy.summary()
    return done


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
             data_dir: Path | None = None, k: list[int] | None = None) -> dict[str, Any]:
    """Re-load a run's data split and best weights, and write its report. ``k``: the ranking cut-offs of a
    recommendation run (default: its recipe's recommend.k)."""
    from danlu.errors import DanluError
    from danlu.evaluation import evaluate as run_evaluation
    from danlu.runs.folder import RunFolder

    if split not in ("train", "val", "test"):
        raise DanluError(f"unknown split '{split}'", hint="valid splits: train, val, test")
    from danlu.recommend import is_recommendation_run

    if is_recommendation_run(resolve_run(run, runs_dir)):  # ranking metrics again (danlu/recommend/evaluate.py)
        from danlu.recommend.evaluate import evaluate_run

        return evaluate_run(resolve_run(run, runs_dir), split, k, data_dir)
    if k is not None:
        raise DanluError(f"--k sets the cut-offs of a recommendation run's ranking metrics; {run} is not one",
                         hint=f"danlu evaluate {run} --split {split}")
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
