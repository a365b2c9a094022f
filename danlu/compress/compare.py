"""The before/after table of two runs (a source and its pruned successor, a teacher and its distilled student),
timed in PyTorch."""

from __future__ import annotations

from typing import Any


def run_variant(predictor: Any, test: Any, threads: int, name: str, note: str = "") -> Any:
    """One table row for a run's PyTorch model: parameters, weights file, latency, test metric."""
    import numpy as np

    from danlu.compress.measure import Variant, score_outputs, time_variant, timing_inputs, torch_forward
    from danlu.models import count_parameters

    schema = predictor.schema
    fn = torch_forward(predictor.model, schema)
    out = np.concatenate([fn(x) for x in test.batches])
    metric_name, metric = ("agreement", None) if test.labels is None else score_outputs(out, test.labels, schema)
    inputs = timing_inputs(test.batches, int(schema.text.get("pad_id", 0)) if schema.kind == "text" else 0)
    v = Variant(name, count_parameters(predictor.model)[0], (predictor.run_dir / "model.safetensors").stat().st_size,
                time_variant(fn, inputs, threads), metric_name, metric, None, note)
    return v, out


def compare_runs(before: Any, after: Any, test: Any, threads: int, note: str, *, key: str = "prune",
                 roles: tuple[str, str] = ("original", "compressed")) -> tuple[list[Any], str]:
    """Rows for ``before`` and ``after`` (Predictors on the same test set), written as the ``key`` table of
    ``after``'s folder; ``roles`` name the two rows."""
    from danlu.compress.measure import agreement, machine, write_table

    base, base_out = run_variant(before, test, threads, f"{roles[0]} ({before.run_dir.name})")
    new, new_out = run_variant(after, test, threads, f"{roles[1]} ({after.run_dir.name})", note)
    new.agreement = agreement(new_out, base_out, before.schema)
    info = {"run": after.run_dir.name, "source": str(before.run_dir), "method": note, "machine": machine(threads),
            "test": test.note or f"{len(test.labels)} test samples"}
    variants = [base, new]
    return variants, write_table(after.run_dir, key, variants, info)
