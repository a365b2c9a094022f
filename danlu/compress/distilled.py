"""A distilled run's teacher-vs-student table (compress.json / compress.md), timed alike on the student's
test split, so a distilled run says what it bought (size, latency) and at what accuracy."""

from __future__ import annotations

from pathlib import Path


def write_teacher_table(student_run: Path, threads: int = 1, data_dir: Path | None = None) -> str | None:
    """The table for a run trained with ``train.distill``; None for any other run."""
    from danlu.compress.compare import compare_runs
    from danlu.compress.data import load_test_set
    from danlu.predictor import Predictor
    from danlu.runs.lineage import read_lineage

    lineage = read_lineage(student_run) or {}
    if lineage.get("method") != "distill":
        return None
    teacher, student = Predictor.load(lineage["teacher"]), Predictor.load(student_run)  # on the CPU, as saved
    test = load_test_set(student, data_dir, say=lambda *_: None)  # or the parity sample when the data moved
    note = f"distilled (temperature {lineage['temperature']:g}, alpha {lineage['alpha']:g})"
    return compare_runs(teacher, student, test, threads, note, key="distill", roles=("teacher", "student"))[1]
