"""What the studio knows about runs, read from their folders each time (no database that could drift).

Every reader here turns a damaged or half-written file into a ``problems`` entry of that run instead of
an exception: one broken folder must never hide the others. The list reads the few small files a row
needs (status.json, report.json's metrics, recipe.yaml) and remembers them by (mtime, size), so a list
of hundreds of runs re-reads only the folders that changed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from danlu.errors import RunError

# metrics shown in the list, first found wins per kind
KEY_METRICS = ("accuracy", "f1_macro", "r2", "mae", "rmse")


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


class FileCache:
    """Parsed files remembered by path and (mtime, size): a changed file is parsed again."""

    def __init__(self) -> None:
        self._seen: dict[tuple[Path, Any], tuple[tuple[int, int], Any]] = {}

    def read(self, path: Path, parse: Any) -> Any:
        stamp = _stamp(path)
        if stamp is None:
            raise FileNotFoundError(path)
        hit = self._seen.get((path, parse))
        if hit is not None and hit[0] == stamp:
            return hit[1]
        value = parse(path)
        self._seen[(path, parse)] = (stamp, value)
        return value


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunError(f"{path.name} is damaged: not valid JSON ({e})") from None


def _recipe(path: Path) -> dict:
    """recipe.yaml as a dict. One without anchors or aliases (danlu writes none) cannot be an alias bomb,
    so libyaml's C loader reads it (~20x faster than the bounded pure-Python loader, which every other
    file still goes through): listing 500 runs is mostly this."""
    import yaml

    from danlu.runs.store import read_run_recipe

    raw = path.read_bytes()
    fast = getattr(yaml, "CSafeLoader", None)
    if fast is None or b"&" in raw or b"*" in raw or len(raw) > 256 * 1024:
        return read_run_recipe(path.parent)
    try:
        recipe = yaml.load(raw.decode("utf-8"), Loader=fast)  # noqa: S506 - the C *safe* loader
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError):
        return read_run_recipe(path.parent)  # the bounded loader names the problem
    if not isinstance(recipe, dict):
        return read_run_recipe(path.parent)
    return recipe


def _recipe_head(path: Path) -> dict:
    """The three keys a list row shows (name, model.name, data.name), read from the lines danlu's own
    recipe.yaml has (``name: x`` at the top, ``  name: y`` first in its block). Building the whole recipe
    costs ~8 ms a file in PyYAML's constructor, the bulk of listing 500 runs; any other layout is parsed
    whole (``_recipe``)."""
    import yaml

    head: dict[str, Any] = {}
    block = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        if not line.startswith(" "):
            key, _, value = line.partition(":")
            block = key if not value.strip() else None
            if key == "name":
                head["name"] = value.strip()
        elif block in ("model", "data") and line.startswith("  name:") and block not in head:
            head[block] = {"name": line[len("  name:"):].strip()}
    if "name" not in head or "model" not in head or "data" not in head:
        return _recipe(path)
    try:  # values as YAML reads them (quotes, escapes)
        head["name"] = yaml.safe_load(head["name"])
        for block in ("model", "data"):
            head[block]["name"] = yaml.safe_load(head[block]["name"])
    except yaml.YAMLError:
        return _recipe(path)
    return head


def _history(path: Path) -> list[dict[str, Any]]:
    """metrics.jsonl rows; a torn last line (a run killed mid-write) is left out, not an error."""
    rows = []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break  # being written, or cut by a kill
            raise RunError(f"metrics.jsonl line {i + 1} is damaged") from None
        if isinstance(row, dict):
            rows.append(row)
    return rows


class RunsIndex:
    """The runs under one folder, for the studio's pages and API."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.cache = FileCache()

    # ---------------------------------------------------------------- finding

    def run_dirs(self) -> list[Path]:
        """Folders holding a recipe.yaml or a status.json, newest name last (names are time-stamped)."""
        if not self.root.is_dir():
            return []
        out = []
        with os.scandir(self.root) as it:
            for e in it:
                if e.is_dir() and not e.name.startswith("."):
                    p = Path(e.path)
                    if (p / "recipe.yaml").exists() or (p / "status.json").exists():
                        out.append(p)
        return sorted(out, key=lambda p: p.name)

    def study_dirs(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if p.is_dir() and
                      ((p / "study.json").exists() or (p / "tune.json").exists()))

    def path_of(self, name: str) -> Path:
        """The run folder called ``name`` under the root; only plain names (no path tricks)."""
        if not name or "/" in name or "\\" in name or name in (".", "..") or name.startswith("."):
            raise RunError(f"no run '{name}'", hint="pick one from the list")
        path = self.root / name
        if not path.is_dir():
            raise RunError(f"no run '{name}' in {self.root}", hint="pick one from the list")
        return path

    # ---------------------------------------------------------------- one row of the list

    def summary(self, run: Path) -> dict[str, Any]:
        row: dict[str, Any] = {"run": run.name, "recipe": None, "status": "?", "metrics": {}, "problems": []}
        problems = row["problems"]
        try:
            status = self.cache.read(run / "status.json", _json)
            if not isinstance(status, dict) or not isinstance(status.get("status"), str):
                raise RunError("status.json is not a status object")
            row.update(status=status["status"], epoch=status.get("epoch", status.get("epochs")),
                       epochs=status.get("epochs"))
            if status.get("error"):
                row["error"] = str(status["error"])[:300]
        except FileNotFoundError:
            problems.append("no status.json (never started, or written by an older danlu)")
        except (RunError, OSError) as e:
            problems.append(str(e))
        try:
            recipe = self.cache.read(run / "recipe.yaml", _recipe_head)
            row["recipe"] = recipe.get("name")
            row["model"] = (recipe.get("model") or {}).get("name") if isinstance(recipe.get("model"), dict) else None
            row["data"] = (recipe.get("data") or {}).get("name") if isinstance(recipe.get("data"), dict) else None
        except FileNotFoundError:
            problems.append("no recipe.yaml")
        except (RunError, OSError) as e:
            problems.append(str(e).replace(str(run) + os.sep, ""))
        report = run / "report.json"
        if report.exists():
            try:
                data = self.cache.read(report, _json)
                metrics = data.get("metrics") if isinstance(data, dict) else None
                if not isinstance(metrics, dict):
                    raise RunError("report.json is damaged: no metrics object")
                row["metrics"] = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
            except (RunError, OSError) as e:
                problems.append(str(e))
        row["duration_s"] = _duration(run)
        row["started"] = _started(run)
        if problems and row["status"] not in ("training", "evaluating"):
            row["status"] = "damaged"
        row["key"] = {k: row["metrics"][k] for k in KEY_METRICS if k in row["metrics"]}
        return row

    def list(self) -> list[dict[str, Any]]:
        return [self.summary(r) for r in self.run_dirs()]

    # ---------------------------------------------------------------- one run opened

    def detail(self, name: str) -> dict[str, Any]:
        run = self.path_of(name)
        out = self.summary(run)
        problems = out["problems"]
        out["recipe_yaml"] = _text(run / "recipe.yaml", problems)
        if out["recipe_yaml"] is not None:
            try:  # the whole file, which the list's quick read does not check
                self.cache.read(run / "recipe.yaml", _recipe)
            except (RunError, OSError) as e:
                problems.append(str(e).replace(str(run) + os.sep, ""))
                out["status"] = "damaged"
        out["report"] = None
        if (run / "report.json").exists():
            try:
                out["report"] = self.cache.read(run / "report.json", _json)
            except (RunError, OSError):
                pass  # already a problem of the summary
        out["history"] = self.history(run, problems)
        out["figures"] = _figures(run)
        out["status_json"] = None
        try:
            out["status_json"] = self.cache.read(run / "status.json", _json)
        except (FileNotFoundError, RunError, OSError):
            pass
        out["predictable"] = out["status"] == "done" and (run / "model.safetensors").is_file() \
            and (run / "schema.json").is_file()
        if out["predictable"]:
            try:
                schema = self.cache.read(run / "schema.json", _json)
                out["kind"], out["task"] = schema.get("kind"), schema.get("task")
                out["input_shape"] = schema.get("input_shape")
                out["features"] = schema.get("features")
            except (RunError, OSError) as e:
                problems.append(str(e))
                out["predictable"] = False
        return out

    def history(self, run: Path, problems: list[str] | None = None) -> list[dict[str, Any]]:
        path = run / "metrics.jsonl"
        try:
            return self.cache.read(path, _history)
        except FileNotFoundError:
            return []
        except (RunError, OSError) as e:
            if problems is not None:
                problems.append(str(e))
            return []

    def figure(self, name: str, figure: str) -> Path:
        run = self.path_of(name)
        figures = _figures(run)
        if figure not in figures:  # names come from the folder listing, never a path built from the request
            raise RunError(f"no figure '{figure}' in the run {name}", hint="one of " + (", ".join(figures) or "none"))
        return run / "plots" / f"{figure}.png"

    # ---------------------------------------------------------------- tuning studies

    def studies(self) -> list[dict[str, Any]]:
        out = []
        for d in self.study_dirs():
            row: dict[str, Any] = {"study": d.name, "problems": []}
            try:
                data = self.cache.read(d / "study.json", _json)
                row.update(metric=data.get("metric"), direction=data.get("direction"),
                           counts=data.get("counts"), best=data.get("best"))
            except FileNotFoundError:
                row["problems"].append("no study.json yet (the search is running, or was stopped)")
            except (RunError, OSError) as e:
                row["problems"].append(str(e))
            out.append(row)
        return out

    def study(self, name: str) -> dict[str, Any]:
        folder = self.path_of(name)
        out: dict[str, Any] = {"study": name, "problems": [], "trials": []}
        try:
            data = self.cache.read(folder / "study.json", _json)
            if not isinstance(data, dict):
                raise RunError("study.json is not an object")
            out.update(data)
        except FileNotFoundError:
            out["problems"].append("no study.json yet (the search is running, or was stopped)")
        except (RunError, OSError) as e:
            out["problems"].append(str(e))
        out["plots"] = _figures(folder)
        out["best_yaml"] = _text(folder / "best.yaml", None)
        return out

    def study_plot(self, name: str, plot: str) -> Path:
        folder = self.path_of(name)
        plots = _figures(folder)
        if plot not in plots:
            raise RunError(f"no plot '{plot}' in the study {name}", hint="one of " + (", ".join(plots) or "none"))
        return folder / "plots" / f"{plot}.png"


def _figures(folder: Path) -> list[str]:
    """The PNGs in a run's (or study's) plots/: learning curves first, then by name."""
    plots = folder / "plots"
    if not plots.is_dir():
        return []
    names = sorted(p.stem for p in plots.glob("*.png") if p.is_file())
    return sorted(names, key=lambda n: (n != "learning_curves", n))


def _text(path: Path, problems: list[str] | None) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _started(run: Path) -> float | None:
    stamp = _stamp(run / "recipe.yaml")
    return stamp[0] / 1e9 if stamp else None


def _duration(run: Path) -> float | None:
    """From the first file a run writes (recipe.yaml) to its last status change: wall time, load included."""
    first, last = _stamp(run / "recipe.yaml"), _stamp(run / "status.json")
    if first is None or last is None:
        return None
    return max(0.0, (last[0] - first[0]) / 1e9)
