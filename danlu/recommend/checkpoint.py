"""Per-epoch training state of MF / two-tower in one atomically written safetensors file, so a killed run
resumes to exactly the result of an uninterrupted one: the weights, the best epoch's weights, the
optimizer, both random generators (negatives and order; the two-tower's id dropout) and the epoch loop's
bookkeeping (best score, history) in the file's JSON metadata. One rename makes it visible whole.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from danlu.errors import RunError

SELECT = Path("checkpoints") / "select.safetensors"  # the epochs scored on validation
REFIT = Path("checkpoints") / "refit.safetensors"  # the retraining on train + validation


def save_fit_state(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                   generator: torch.Generator, best_state: dict[str, torch.Tensor] | None,
                   info: dict[str, Any]) -> None:
    from danlu.runs.checkpoint import split_optimizer_state
    from danlu.runs.files import save_tensors

    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    if best_state is not None:
        tensors.update({f"best.{k}": v for k, v in best_state.items()})
    opt_tensors, plain = split_optimizer_state(optimizer)  # the layout of every danlu checkpoint
    tensors.update(opt_tensors)
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["rng.data"] = generator.get_state()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_tensors(path, tensors, metadata={"danlu": json.dumps({**info, "optimizer": plain}, allow_nan=True)})


def load_fit_state(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                   generator: torch.Generator) -> tuple[dict[str, Any], dict[str, torch.Tensor] | None]:
    """Restores model, optimizer and generators in place; returns (the loop's bookkeeping, best weights)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from danlu.runs.checkpoint import optimizer_state
    from danlu.runs.files import check_run_file

    check_run_file(path, within=path.parent.parent)  # a regular file in the run folder
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads(f.metadata()["danlu"])
        tensors = load_file(str(path))
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        optimizer.load_state_dict(optimizer_state(tensors, meta.pop("optimizer")))
    except RunError:
        raise
    except Exception as e:  # safetensors' / torch's own error types: a truncated, overwritten or foreign file
        raise RunError(f"the checkpoint {path} is damaged ({type(e).__name__}: {str(e)[:120]})",
                       hint="it cannot be resumed; start the run again with danlu train") from None
    torch.set_rng_state(tensors["rng.torch"])
    generator.set_state(tensors["rng.data"])
    best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")} or None
    return meta, best


def saved_history(path: Path) -> list[dict[str, Any]]:
    """The epoch rows a checkpoint holds ([] without one): metrics.jsonl is rewritten to them on resume."""
    from safetensors import safe_open

    if not path.is_file():
        return []
    try:
        with safe_open(str(path), framework="pt") as f:
            return list(json.loads(f.metadata()["danlu"])["history"])
    except Exception as e:  # safetensors' own error types, or metadata that is not ours
        raise RunError(f"the checkpoint {path} is damaged ({type(e).__name__})",
                       hint="it cannot be resumed; start the run again with danlu train") from None
