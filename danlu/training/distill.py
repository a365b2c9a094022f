"""Knowledge distillation (Hinton et al. 2015) as a training step that wraps the plain supervised one.

``train.distill: {teacher: RUN, temperature: T, alpha: a}``: the student's loss is
a × T² × KL(softmax(teacher / T) ‖ softmax(student / T)) + (1 - a) × the recipe's own loss on the labels.
T² keeps the soft term's gradients on the scale of the hard one's as T changes. The teacher runs in eval
mode without gradients on the very batch the student sees, so it must read the same input: same task,
classes, input shape and preprocessing (checked before anything is written); the batch is re-mapped to the
teacher's own normalization statistics, which differ a little between runs on other seeds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from danlu.errors import DanluError, RecipeError


class DistillStep:
    """step(x, y) -> (loss, outputs), like SupervisedStep, which it wraps. ``adapt`` maps the student's input
    to the teacher's (its own normalization statistics), or is None when they are the same."""

    def __init__(self, step: Any, teacher: torch.nn.Module, temperature: float, alpha: float,
                 adapt: Any = None):
        self.step, self.teacher, self.temperature, self.alpha = step, teacher, temperature, alpha
        self.adapt = adapt

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hard, out = self.step(x, y)
        with torch.no_grad():
            seen = x if self.adapt is None else self.adapt(x)
            soft_targets = F.softmax(self.teacher(seen).float() / self.temperature, dim=1)
        log_student = F.log_softmax(out.float() / self.temperature, dim=1)
        soft = F.kl_div(log_student, soft_targets, reduction="batchmean") * self.temperature ** 2
        return self.alpha * soft + (1 - self.alpha) * hard, out


class Renormalize:
    """Student-normalized input → teacher-normalized input, exactly: x × (s_student / s_teacher) +
    (m_student − m_teacher) / s_teacher per channel (image) or feature (tabular). The statistics come from a
    sample of the training split, so two runs of one data set on other seeds differ in the third digit; the
    teacher must see the input as it was trained on it, not the student's version of it."""

    def __init__(self, student: tuple[list[float], list[float]], teacher: tuple[list[float], list[float]],
                 image: bool):
        (ms, ss), (mt, st) = student, teacher
        shape = (1, -1, 1, 1) if image else (1, -1)
        self.scale = torch.tensor([a / b for a, b in zip(ss, st, strict=True)]).view(shape)
        self.shift = torch.tensor([(a - b) / s for a, b, s in zip(ms, mt, st, strict=True)]).view(shape)

    def to(self, device: torch.device) -> Renormalize:
        self.scale, self.shift = self.scale.to(device), self.shift.to(device)
        return self

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.shift.to(x.dtype), x, self.scale.to(x.dtype))


def renormalizer(student: Any, teacher: Any) -> Renormalize | None:
    """The map from the student schema's normalization to the teacher's, or None when they are equal."""
    width = len(student.mean or teacher.mean or [])
    if not width or (student.mean == teacher.mean and student.std == teacher.std):
        return None

    def stats(s: Any) -> tuple[list[float], list[float]]:  # no statistics: the loaders' defaults
        return list(s.mean or [0.0] * width), list(s.std or [1.0] * width)

    return Renormalize(stats(student), stats(teacher), student.kind == "image")


class Teacher:
    """A finished classification run, loaded and checked against the student's data."""

    def __init__(self, run_dir: Path, model: torch.nn.Module, digest: str, config: Any,
                 adapt: Renormalize | None = None):
        self.run_dir, self.model, self.digest, self.config, self.adapt = run_dir, model, digest, config, adapt

    def wrap(self, step: Any, device: torch.device) -> DistillStep:
        self.model.to(device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        adapt = self.adapt.to(device) if self.adapt is not None else None
        return DistillStep(step, self.model, self.config.temperature, self.config.alpha, adapt)

    def lineage(self) -> dict[str, Any]:
        return {"method": "distill", "teacher": str(self.run_dir), "teacher_weights_sha256": self.digest,
                "temperature": self.config.temperature, "alpha": self.config.alpha}

    def record(self, run_dir: Path, resumed: bool) -> None:
        """lineage.json in the student's run; a resumed run must find the teacher it started with."""
        from danlu.runs.lineage import read_lineage, write_lineage

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
    # normalization statistics may differ (they are re-mapped, see Renormalize); what they normalize may not
    checks = [("classes", ts.classes, schema.classes), ("kind of data", ts.kind, schema.kind),
              ("input shape", list(ts.input_shape or []), list(schema.input_shape or [])),
              ("input features", ts.features, schema.features), ("categories", ts.categories, schema.categories),
              ("normalized width", len(ts.mean or schema.mean or []), len(schema.mean or ts.mean or [])),
              ("text preprocessing", ts.text, schema.text)]
    for what, theirs, ours in checks:
        if theirs != ours:
            raise RecipeError(f"{where} was trained with {what} {theirs}, this recipe's data gives {ours}: the "
                              "teacher must read the same input as the student",
                              hint="train the teacher on the same data and preprocessing (same data.* settings)")
    return Teacher(teacher.run_dir, teacher.model, weights_digest(teacher.run_dir), config,
                   renormalizer(schema, ts))
