"""Knowledge distillation (Hinton et al. 2015) as a training step that wraps the plain supervised one.

``train.distill: {teacher: RUN, temperature: T, alpha: a}``: the student's loss is
a × T² × KL(softmax(teacher / T) ‖ softmax(student / T)) + (1 - a) × the recipe's own loss on the labels.
T² keeps the soft term's gradients on the scale of the hard one's as T changes. The teacher runs in eval
mode without gradients on the very batch the student sees, so it must read the same input: same task,
classes, input shape and preprocessing (checked before anything is written).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from danlu.errors import DanluError, RecipeError


class DistillStep:
    """step(x, y) -> (loss, outputs), like SupervisedStep, which it wraps."""

    def __init__(self, step: Any, teacher: torch.nn.Module, temperature: float, alpha: float):
        self.step, self.teacher, self.temperature, self.alpha = step, teacher, temperature, alpha

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hard, out = self.step(x, y)
        with torch.no_grad():
            soft_targets = F.softmax(self.teacher(x).float() / self.temperature, dim=1)
        log_student = F.log_softmax(out.float() / self.temperature, dim=1)
        soft = F.kl_div(log_student, soft_targets, reduction="batchmean") * self.temperature ** 2
        return self.alpha * soft + (1 - self.alpha) * hard, out


class Teacher:
    """A finished classification run, loaded and checked against the student's data."""

    def __init__(self, run_dir: Path, model: torch.nn.Module, digest: str, config: Any):
        self.run_dir, self.model, self.digest, self.config = run_dir, model, digest, config

    def wrap(self, step: Any, device: torch.device) -> DistillStep:
        self.model.to(device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        return DistillStep(step, self.model, self.config.temperature, self.config.alpha)

    def lineage(self) -> dict[str, Any]:
        return {"method": "distill", "teacher": str(self.run_dir), "teacher_weights_sha256": self.digest,
                "temperature": self.config.temperature, "alpha": self.config.alpha}

    def record(self, run_dir: Path, resumed: bool) -> None:
        """lineage.json in the student's run; a resumed run must find the teacher it started with."""
        from danlu.compress.lineage import read_lineage, write_lineage

        if resumed:
            old = read_lineage(run_dir) or {}
            if old.get("teacher_weights_sha256") not in (None, self.digest):
                raise DanluError(f"the teacher {self.run_dir.name} is not the one this run started with (its weights "
                                 "changed, or train.distill.teacher now names a newer run)",
                                 hint=f"resume with that run's recipe naming the teacher folder {old.get('teacher')}")
            return
        write_lineage(run_dir, self.lineage())


def load_teacher(config: Any, schema: Any, runs_dir: Path | None = None) -> Teacher:
    """The teacher run, refused with the reason when it cannot teach this student."""
    from danlu.errors import RunError
    from danlu.export import weights_digest
    from danlu.predictor import Predictor

    try:
        teacher = Predictor.load(config.teacher, runs_dir)
    except RunError as e:
        raise RecipeError(f"train.distill.teacher: {e.message}",
                          hint=e.hint or "train the teacher first, or give its run folder") from None
    ts, where = teacher.schema, f"train.distill.teacher {teacher.run_dir.name}"
    if schema.task != "classification" or ts.task != "classification":
        raise RecipeError(f"{where}: distillation needs classification for teacher and student (teacher: "
                          f"{ts.task}, student: {schema.task})", hint="distill a classifier from a classifier")
    checks = [("classes", ts.classes, schema.classes), ("kind of data", ts.kind, schema.kind),
              ("input shape", list(ts.input_shape or []), list(schema.input_shape or [])),
              ("normalization mean", ts.mean, schema.mean), ("normalization std", ts.std, schema.std),
              ("text preprocessing", ts.text, schema.text)]
    for what, theirs, ours in checks:
        if not _same(theirs, ours):
            raise RecipeError(f"{where} was trained with {what} {theirs}, this recipe's data gives {ours}: the "
                              "teacher must read the same input as the student",
                              hint="train the teacher on the same data and preprocessing (same data.* settings)")
    return Teacher(teacher.run_dir, teacher.model, weights_digest(teacher.run_dir), config)


def _same(a: Any, b: Any) -> bool:
    """Equal; normalization statistics within 0.1 % (split sizes move them in the last digits)."""
    import math

    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and all(
            isinstance(v, float) for v in a + b):
        return all(math.isclose(u, v, rel_tol=1e-3, abs_tol=1e-6) for u, v in zip(a, b, strict=True))
    return a == b
