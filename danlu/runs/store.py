"""Where runs live: naming, finding and listing run folders, and reading a run's recipe.

A run folder alone (recipe.yaml, schema.json, model.safetensors) is enough to predict, serve and export.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from danlu.errors import RunError

RUNS_DIR = Path("runs")


def read_run_recipe(run_dir: Path) -> dict:
    """A run's resolved recipe.yaml as a dict, through the bounded safe loader; a damaged one is a RunError
    that names it."""
    from danlu.runs.files import damaged, read_yaml_file

    path = Path(run_dir) / "recipe.yaml"
    recipe = read_yaml_file(path, within=run_dir)  # aliases bounded: a bomb is refused
    if not isinstance(recipe, dict):
        raise damaged(path, "not a recipe")
    return recipe


def new_run_dir(recipe_name: str, root: Path | None = None) -> Path:
    root = Path(root or RUNS_DIR)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in recipe_name)[:60] or "run"
    for k in range(1000):
        path = root / (f"{stamp}-{safe}" if k == 0 else f"{stamp}-{safe}-{k}")
        try:
            path.mkdir(parents=True)
            return path.resolve()
        except FileExistsError:
            if not root.is_dir():
                raise RunError(f"--runs-dir {root} is a file, not a folder", hint="give a folder (it is created "
                               "when missing)") from None
            continue
        except OSError as e:  # a file on the way, no permission, a read-only or virtual file system
            raise RunError(f"cannot create a run folder under {root}: {e.strerror or e}",
                           hint="give --runs-dir a folder you can write to") from None
    raise RunError(f"could not create a run folder under {root}")


def resolve_run(arg: str | Path, root: Path | None = None) -> Path:
    """A run folder path; or under ./runs a folder name, a unique prefix of one, "latest", or part of a
    name (the newest run that contains it: names are time-stamped)."""
    from danlu.runs.files import check_path_text

    root = Path(root or RUNS_DIR)
    check_path_text(str(arg), "run")
    p = Path(arg)
    candidates = [p, root / p]
    for c in candidates:
        if c.is_dir() and (c / "recipe.yaml").exists():
            return c.resolve()
    runs = list_runs(root)
    name = str(arg)
    prefixed = [d for d in runs if d.name.startswith(name)]
    if len(prefixed) == 1:
        return prefixed[0]
    if len(prefixed) > 1:
        raise RunError(f"'{name}' is the start of {len(prefixed)} run names",
                       hint="give more of the name, e.g. " + ", ".join(d.name for d in prefixed[-3:]))
    if name == "latest" and runs:
        return runs[-1]
    named = [d for d in runs if name in d.name]  # "digits" → the newest run of a digits recipe
    if named:
        return named[-1]
    recent = [d.name for d in runs[-5:]]
    raise RunError(f"no run folder '{arg}'",
                   hint=("recent runs: " + ", ".join(recent)) if recent else "train one first: danlu train digits-mlp")


def hold_run(run_dir: Path) -> Any:
    """An exclusive lock on a run folder while it trains: a second ``--resume`` of the same run would
    append to the same metrics and checkpoints. The OS drops the lock when the process dies."""
    handle = (Path(run_dir) / ".lock").open("a+")
    try:
        import fcntl

        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except ImportError:  # not POSIX: no lock
        pass
    except OSError:
        handle.close()
        raise RunError(f"{run_dir.name} is being trained by another process right now",
                       hint="wait for it to finish (danlu runs shows its status), or train a new run") from None
    return handle


def list_runs(root: Path | None = None) -> list[Path]:
    root = Path(root or RUNS_DIR)
    if not root.is_dir():
        return []
    return sorted((d.resolve() for d in root.iterdir() if (d / "recipe.yaml").exists()), key=lambda d: d.name)


def metrics_history(run_dir: Path) -> list[dict[str, Any]]:
    """The per-epoch rows of metrics.jsonl (empty before the first epoch ends), read a block at a time and
    bounded (``danlu.runs.files``); a torn last line (a run killed mid-append) is left out."""
    from danlu.runs.files import damaged, iter_lines

    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    rows = []
    for number, line, last in iter_lines(path, within=run_dir):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError):
            if last:
                break
            raise damaged(path, f"line {number} is not JSON") from None
        if isinstance(row, dict):
            rows.append(row)
    return rows
