"""What a recommendation run keeps on disk beside the recipe: schema.json (kind "interactions"), id_maps.json,
items.json, model.safetensors and history.safetensors (each user's known items, masked when recommending)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from danlu.recipe import Recipe


class InteractionSchema:
    """schema.json of a recommendation run (the run lifecycle writes it through ``to_json``)."""

    def __init__(self, **fields: Any):
        self.fields = {"kind": "interactions", **fields}

    def to_json(self) -> str:
        return json.dumps(self.fields, indent=2, ensure_ascii=False)


def start(recipe: Recipe, data: Any, schema: dict[str, Any], runs_dir: Path | None, run_dir: Path | None) -> Any:
    """The run folder through the shared run lifecycle, with the id maps and item table as its setup files."""
    from danlu.runs.files import atomic_write_text, write_json
    from danlu.runs.lifecycle import environment, start_run

    artifacts = {"id_maps": lambda path: atomic_write_text(path / "id_maps.json", data.id_maps_json()),
                 "items": lambda path: write_json(path / "items.json", dict(data.item_info))}
    full = InteractionSchema(**schema, n_users=data.n_users, n_items=data.n_items, source=data.source)
    return start_run(recipe, full, environment("cpu"), artifacts, runs_dir=runs_dir, run_dir=run_dir)


def save_weights(run: Path, model: Any, recipe: Recipe, known: sp.csr_matrix) -> None:
    import torch

    from danlu.runs.files import save_tensors

    save_tensors(run / "history.safetensors", {"indptr": torch.from_numpy(known.indptr.astype(np.int64)),
                                               "indices": torch.from_numpy(known.indices.astype(np.int64))})
    save_tensors(run / "model.safetensors", dict(model.state_dict()),
                 metadata={"danlu": json.dumps({"model": recipe.model.name, "task": "recommendation"})})


def load_history(run: Path, n_items: int) -> sp.csr_matrix:
    from safetensors.numpy import load_file

    from danlu.errors import RunError
    from danlu.runs.files import check_run_file

    path = run / "history.safetensors"
    check_run_file(path, within=run)  # a regular file in the run folder: not a FIFO, device or link out
    try:
        t = load_file(str(path))
        indptr, indices = t["indptr"], t["indices"]
    except Exception as e:  # a missing or damaged file: safetensors' own error types
        raise RunError(f"{path} is missing or damaged ({type(e).__name__})", hint="train the run again") from None
    return sp.csr_matrix((np.ones(len(indices), dtype=np.float32), indices, indptr), shape=(len(indptr) - 1, n_items))


def reopen(run_dir: Path, data: Any, schema: dict[str, Any]) -> Any:
    """A run folder to resume: it must be unfinished and its data the same table (users, items) it began on."""
    from danlu.errors import RunError
    from danlu.runs.files import read_json_file
    from danlu.runs.folder import RunFolder

    run = RunFolder(Path(run_dir))
    state = run.status().get("status")
    if state in ("done", "pruned"):
        raise RunError(f"{run.path} is {state}: there is nothing to resume",
                       hint=f"train it again as a new run: danlu train {run.path / 'recipe.yaml'}")
    saved = read_json_file(run.path / "schema.json", within=run.path)
    now = {"n_users": data.n_users, "n_items": data.n_items, "source": data.source, **schema}
    changed = [k for k in ("n_users", "n_items", "task", "model") if saved.get(k) != now[k]]
    if changed:
        raise RunError(f"{run.path} began on other data or another model ({', '.join(changed)} differ: "
                       f"{', '.join(f'{saved.get(k)} then, {now[k]} now' for k in changed)})",
                       hint="resume it with the data it was trained on, or train a new run")
    run.update_status("training", resumed=True)
    return run
