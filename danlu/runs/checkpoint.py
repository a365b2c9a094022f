"""Training state in one atomically written safetensors file: model, optimizer, RNG, epoch, history.

Everything that is not a tensor goes into the file's metadata as JSON, so one rename makes a
checkpoint visible whole — a SIGKILL can never leave a model from one epoch beside an optimizer
from another. last.json is a human-readable copy of that metadata.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from danlu.errors import RunError
from danlu.runs.files import save_tensors, write_json


def save_training_state(path: Path, model: nn.Module, optimizer: Any, scheduler: Any,
                        generator: torch.Generator, info: dict[str, Any]) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    opt_tensors, opt_plain = split_optimizer_state(optimizer)
    tensors.update(opt_tensors)
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["rng.data"] = generator.get_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    meta = dict(info, optimizer=opt_plain, scheduler=scheduler.state_dict())
    save_tensors(path, tensors, metadata={"danlu": json.dumps(meta, allow_nan=True)})
    write_json(path.with_suffix(".json"), {k: v for k, v in info.items()})


def split_optimizer_state(optimizer: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """torch.optim's state_dict as (tensors for safetensors, the rest for JSON); optimizer_state inverts it."""
    opt = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, Any] = {"param_groups": opt["param_groups"], "plain": {}}
    for k, st in opt["state"].items():
        for name, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optim.state.{k}.{name}"] = v
            else:
                plain["plain"].setdefault(str(k), {})[name] = v
    return tensors, plain


def load_training_state(path: Path, model: nn.Module, optimizer: Any, scheduler: Any,
                        generator: torch.Generator) -> dict[str, Any]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    if not path.exists():
        # last.json is written right after the checkpoint: with it the checkpoint existed and was deleted;
        # without, none was ever written (stopped in the first epoch, or the disk filled while writing it)
        deleted = path.with_suffix(".json").exists()
        raise RunError(f"no checkpoint to resume from: {path}",
                       hint="the checkpoint was deleted; start the run again with danlu train" if deleted
                       else "the run stopped before its first checkpoint was written; start it again with danlu train")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads(f.metadata()["danlu"])
        tensors = load_file(str(path))
    except Exception as e:  # safetensors' own error types: a truncated or overwritten file
        raise RunError(f"the checkpoint {path} is damaged ({type(e).__name__}: {str(e)[:120]})",
                       hint="it cannot be resumed; start the run again with danlu train") from None
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    optimizer.load_state_dict(optimizer_state(tensors, meta.pop("optimizer")))
    scheduler.load_state_dict(meta.pop("scheduler"))
    torch.set_rng_state(tensors["rng.torch"])
    generator.set_state(tensors["rng.data"])
    cuda_states = [tensors[k] for k in sorted(t for t in tensors if t.startswith("rng.cuda."))]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states[: torch.cuda.device_count()])
    return meta


def optimizer_state(tensors: dict[str, torch.Tensor], plain: dict[str, Any]) -> dict[str, Any]:
    """torch.optim's state_dict layout back from the checkpoint's tensors and JSON."""
    state: dict[int, dict[str, Any]] = {}
    if "lrs" in plain:  # danlu 0.1.0 checkpoints: "optim.{k}.{name}" tensors and the groups' lrs
        for key, t in tensors.items():
            if key.startswith("optim."):
                k, _, name = key[len("optim."):].partition(".")
                state.setdefault(int(k), {})["momentum_buffer" if name == "momentum" else name] = t
        return {"state": state, "param_groups": [{"lr": lr} for lr in plain["lrs"]], "lenient": True}
    for key, t in tensors.items():
        if key.startswith("optim.state."):
            k, _, name = key[len("optim.state."):].partition(".")
            state.setdefault(int(k), {})[name] = t
    for k, st in plain.get("plain", {}).items():
        state.setdefault(int(k), {}).update(st)
    return {"state": state, "param_groups": plain["param_groups"]}


def save_model(path: Path, model: nn.Module, info: dict[str, Any] | None = None) -> None:
    """The weights alone (what predict/serve/export load)."""
    meta = {"danlu": json.dumps(info or {})}
    save_tensors(path, dict(model.state_dict()), metadata=meta)


def load_model_weights(path: Path, model: nn.Module) -> None:
    """The run's weights into ``model``, checked first: every tensor's name, shape and dtype must be the
    rebuilt model's, and every value finite. A damaged file is a RunError naming it (a cast int8 tensor
    or a NaN would otherwise predict garbage without a word)."""
    from safetensors import safe_open

    if not path.exists():
        raise RunError(f"missing model weights: {path}", hint="the run did not finish an epoch; train it again")
    from danlu.runs.files import check_run_file

    check_run_file(path, within=path.parent)  # a regular file in the run folder: not a FIFO, device or link out
    again = "restore it from a copy, or train the run again"
    expected = model.state_dict()
    state = {}
    try:
        with safe_open(str(path), framework="pt") as f:
            names = set(f.keys())
            missing, unexpected = sorted(set(expected) - names), sorted(names - set(expected))
            if missing or unexpected:
                raise RunError(f"{path} does not match the model rebuilt from recipe.yaml and schema.json "
                               f"(missing {missing[:3]}, unexpected {unexpected[:3]})", hint=again)
            for name, want in expected.items():
                piece = f.get_slice(name)
                shape, dtype = list(piece.get_shape()), piece.get_dtype()
                if shape != list(want.shape) and name not in getattr(model, "sized_by_file", ()):
                    raise RunError(f"{path}: tensor '{name}' has shape {shape}, the model rebuilt from recipe.yaml "
                                   f"and schema.json needs {list(want.shape)}",
                                   hint="schema.json (classes, input shape, vocabulary) or the weights were "
                                        f"changed after training; {again}")
                if dtype != _SAFETENSORS_DTYPES.get(want.dtype):
                    raise RunError(f"{path}: tensor '{name}' is {dtype}, the model needs "
                                   f"{_SAFETENSORS_DTYPES.get(want.dtype, want.dtype)}", hint=again)
                state[name] = f.get_tensor(name)
    except RunError:
        raise
    except Exception as e:  # safetensors' own errors: truncated, a header length past the file, not JSON
        raise RunError(f"{path} is damaged: not a readable safetensors file ({str(e)[:160]})", hint=again) from None
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise RunError(f"{path}: tensor '{name}' holds NaN or infinite values", hint=again)
    model.load_state_dict(state, strict=True)


_SAFETENSORS_DTYPES = {getattr(torch, k): v for k, v in {
    "float32": "F32", "float64": "F64", "float16": "F16", "bfloat16": "BF16",
    "int64": "I64", "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL",
}.items()}
