"""Assembling a table ensemble (danlu/models/ensemble.py): no training, each member's trained weights are
copied in from its run folder, then the blend is scored on the val split and saved as the run's weights.

The member runs must have read the data as this run does (the same column plan and target scaling), which
is checked first: a member trained on another file or with other columns is refused by name.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from danlu.errors import DanluError
from danlu.training.boosted import BoostLoop


def _same_data(member: Any, schema: Any) -> str | None:
    """Why ``member``'s schema does not match the ensemble's, or None."""
    for key in ("task", "input_shape", "classes", "targets", "target_mean", "target_std", "table"):
        if getattr(member, key) != getattr(schema, key):
            return key
    return None


def assemble(model: Any, splits: Any, schema: Any, recipe: Any, run: Any, *, say: Any = print) -> BoostLoop:
    from danlu.inference import evaluate_loader, make_loader, select_device
    from danlu.metrics import headline
    from danlu.runs.checkpoint import load_model_weights
    from danlu.runs.folder import load_schema

    t0 = time.perf_counter()
    members = recipe.model.options["members"]
    for spec, module in zip(members, model.members, strict=True):
        where = Path(spec["run"])
        if not (where / "model.safetensors").is_file():
            raise DanluError(f"ensemble member {spec['name']}: no trained run at {where}",
                             hint="the member runs must stay where danlu train PATH --time-limit left them; "
                                  "predict, serve and export need only this run's model.safetensors")
        bad = _same_data(load_schema(where / "schema.json"), schema)
        if bad:
            raise DanluError(f"ensemble member {spec['name']} ({where}) read the data differently ({bad} differs)",
                             hint="ensemble runs trained on the same data section and seed")
        load_model_weights(where / "model.safetensors", module)
    loop = BoostLoop(model, 1)
    row: dict[str, float] = {"epoch": 1}
    if len(splits.val):
        loader = make_loader(splits.val, schema, recipe, train=False, generator=None, device=select_device("cpu"),
                             channels_last=False)
        row.update({f"val_{k}": v for k, v in headline(evaluate_loader(model, loader, schema)).items()})
    row["epoch_s"] = time.perf_counter() - t0
    loop.history.append(row)
    loop.epoch = loop.global_step = loop.best_epoch = 1
    run.append_metrics(row)
    run.save_model(model, {"epoch": 1, "members": [{k: m[k] for k in ("name", "weight", "run")} for m in members]})
    shown = "  ".join(f"{k} {v:.4f}" for k, v in row.items() if k.startswith("val_") and k.count("_") == 1)
    say(f"ensemble {model.describe()} assembled from {len(members)} runs  {shown}")
    return loop
