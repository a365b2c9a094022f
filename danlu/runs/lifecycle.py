"""A run's life in one place: started (setup files, status "training"), then failed, interrupted, pruned or
done. ``danlu train``, ``danlu federate``, a search's trials and ``danlu compress``'s new runs all go through
here, so a new state or a new setup file is added once.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from danlu.errors import RunError
from danlu.runs.folder import RunFolder


def environment(device: str, **extra: Any) -> dict[str, Any]:
    """env.json: what the run ran on (versions, device, threads), so its numbers can be read in context."""
    import torch

    from danlu import __version__

    info = {"python": platform.python_version(), "platform": platform.platform(), "torch": torch.__version__,
            "device": device, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    info["danlu"] = __version__
    return {**info, **extra}


def fresh_folder(path: Path) -> Path:
    """An explicit run folder: created, or reused only while it holds no run yet."""
    path = Path(path)
    if (path / "recipe.yaml").exists():
        raise RunError(f"{path} already holds a run", hint="give another folder, or resume it: --resume")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunError(f"cannot create the run folder {path}: {e.strerror or e}") from None
    return path.resolve()


def start_run(recipe: Any, schema: Any, env: dict[str, Any], artifacts: dict[str, Any], *,
              runs_dir: Path | None = None, run_dir: Path | None = None, state: str = "training",
              **status: Any) -> RunFolder:
    """A new run folder (``run_dir``, or a time-stamped one under ``runs_dir``) with its setup files written
    and its first status; nothing is created before the caller has checked data and model."""
    run = RunFolder(fresh_folder(run_dir)) if run_dir is not None else RunFolder.create(recipe.name, runs_dir)
    run.write_setup(recipe, schema, env, artifacts)
    run.set_status(state, **status)
    return run


def fail_run(run: RunFolder, error: BaseException, phase: str, **status: Any) -> None:
    """Ctrl-C is "interrupted", anything else "failed" with the phase and the error's first 500 characters."""
    state = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
    run.update_status(state, **status, failed_in=phase, error=str(error)[:500])


@contextmanager
def phase(run: RunFolder, name: str, **status: Any) -> Iterator[None]:
    """A stretch of a run's life (training, evaluation): an exception inside marks the run and goes on up."""
    try:
        yield
    except BaseException as e:
        fail_run(run, e, name, **status)
        raise


def finish_run(run: RunFolder, state: str = "done", **status: Any) -> None:
    """The run's last status: done (evaluated) or pruned (a search stopped it)."""
    run.set_status(state, **status)
