"""What the studio knows about runs, read from their folders each time (no database that could drift).

Every reader here turns a damaged or half-written file into a ``problems`` entry of that run instead of
an exception: one broken folder must never hide the others. The list reads the few small files a row
needs (status.json, report.json's metrics, recipe.yaml) and remembers them by (mtime, size), so a list
of hundreds of runs re-reads only the folders that changed.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from danlu.errors import RunError
from danlu.runs.files import NAME_MAX, read_bytes, read_json_file, read_text

# metrics rows per answer: the run page draws its curves from the first page and polls for the rest
HISTORY_PAGE = 5000
CACHED_HISTORY = 1 << 20  # metrics.jsonl files up to this size are parsed once and remembered (~2,000 epochs)

# metrics shown in the list, first found wins per kind
KEY_METRICS = ("accuracy", "f1_macro", "r2", "mae", "rmse", "recall@20", "ndcg@20")  # recommendation runs: the last two


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
    """A JSON file of a run or study folder: regular, inside its folder, bounded (``danlu.runs.files``)."""
    return read_json_file(path, within=path.parent)


def _recipe(path: Path) -> dict:
    """recipe.yaml as a dict. One without anchors or aliases (danlu writes none) cannot be an alias bomb,
    so libyaml's C loader reads it (~20x faster than the bounded pure-Python loader, which every other
    file still goes through): listing 500 runs is mostly this."""
    import yaml

    from danlu.runs.store import read_run_recipe

    raw = read_bytes(path, within=path.parent)
    fast = getattr(yaml, "CSafeLoader", None)
    if fast is None or b"&" in raw or b"*" in raw or len(raw) > 256 * 1024:
        return read_run_recipe(path.parent)
    try:
        recipe = yaml.load(raw.decode("utf-8"), Loader=fast)  # noqa: S506 - the C *safe* loader, no aliases
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError):
        return read_run_recipe(path.parent)  # the bounded loader names the problem
    if not isinstance(recipe, dict):
        return read_run_recipe(path.parent)
    return recipe


def _recipe_head(path: Path) -> dict:
    """The three keys a list row shows (name, model.name, data.name), read from the lines danlu's own
    recipe.yaml has (``name: x`` at the top, ``  name: y`` first in its block). Building the whole recipe
    costs ~8 ms a file in PyYAML's constructor, the bulk of listing 500 runs; any other layout is parsed
    whole (``_recipe``). Each value goes through danlu's bounded loader: a 428-byte line of nested aliases
    once answered 469 MB here through plain ``yaml.safe_load``."""
    import yaml

    from danlu import safe_yaml

    raw = read_bytes(path, within=path.parent)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return _recipe(path)  # names the problem
    head: dict[str, Any] = {}
    block = None
    for line in text.splitlines():
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
    if any(ch in v for v in (head["name"], head["model"]["name"], head["data"]["name"]) for ch in "&*"):
        return _recipe(path)  # anchors or aliases: the whole file through the bounded loader
    try:  # values as YAML reads them (quotes, escapes)
        head["name"] = safe_yaml.load(head["name"])
        for block in ("model", "data"):
            head[block]["name"] = safe_yaml.load(head[block]["name"])
    except (yaml.YAMLError, RecursionError):
        return _recipe(path)
    return head


def _history_page(path: Path, after: int, limit: int) -> tuple[list[dict[str, Any]], bool]:
    """One page of a big metrics.jsonl: the lines before it counted, not parsed; reading stops after it."""
    import json

    from danlu.runs.files import damaged, iter_lines

    rows: list[dict[str, Any]] = []
    seen = 0
    for number, line, last in iter_lines(path, within=path.parent):
        if not line.strip():
            continue
        seen += 1
        if seen <= after:
            continue
        if len(rows) == limit:
            return rows, True
        try:
            row = json.loads(line)
        except (ValueError, RecursionError):
            if last:
                break  # being written, or cut by a kill
            raise damaged(path, f"line {number} is not JSON") from None
        if isinstance(row, dict):
            rows.append(row)
    return rows, False


def _history(path: Path) -> list[dict[str, Any]]:
    """metrics.jsonl rows, read a block at a time and bounded; a torn last line (a run killed mid-write) is
    left out, not an error."""
    from danlu.runs.store import metrics_history

    return metrics_history(path.parent)


class RunsIndex:
    """The runs under one folder, for the studio's pages and API."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.cache = FileCache()
        self._listing = threading.Lock()
        self._last_list: tuple[float, list[dict[str, Any]]] | None = None

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
        if not name or "/" in name or "\\" in name or name in (".", "..") or name.startswith(".") \
                or "\0" in name or len(os.fsencode(name)) > NAME_MAX:
            shown = name if len(name) <= 80 else name[:80] + f"... ({len(name):,} characters)"
            raise RunError(f"no run '{shown}'", hint="pick one from the list")
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
        """Every run's row. Lists asked for at once are made once: a request waits for the list being made
        if that one started after it arrived (so it is as fresh), else makes the next (40 lists at once
        on 2 cores each took their turn at the GIL and held the event loop up to 0.8 s)."""
        asked = time.monotonic()
        with self._listing:
            made = self._last_list
            if made is not None and made[0] >= asked:
                return made[1]
            started = time.monotonic()
            rows = [self.summary(r) for r in self.run_dirs()]
            self._last_list = (started, rows)
            return rows

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
        out["history"], out["history_more"] = self.history(run, problems=problems)  # the rest: /metrics
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

    def history(self, run: Path, after: int = 0, limit: int = HISTORY_PAGE,
                problems: list[str] | None = None) -> tuple[list[dict[str, Any]], bool]:
        """(metrics.jsonl rows after the first ``after``, at most ``limit``; whether more follow). A small
        file is parsed once and remembered; a big one (up to its 32 MiB bound) is read a page at a time
        and not kept: a 20 MB file once held +140 MB of parsed rows in the studio for good."""
        path = run / "metrics.jsonl"
        try:
            if _stamp(path) is None:
                return [], False
            if _stamp(path)[1] <= CACHED_HISTORY:
                rows = self.cache.read(path, _history)
                return rows[after:after + limit], len(rows) > after + limit
            return _history_page(path, after, limit)
        except FileNotFoundError:
            return [], False
        except (RunError, OSError) as e:
            if problems is not None:
                problems.append(str(e).replace(str(run) + os.sep, ""))
            return [], False

    def figure(self, name: str, figure: str) -> bytes:
        """A figure's PNG bytes: regular, inside the run folder, bounded (``danlu.runs.files``)."""
        run = self.path_of(name)
        figures = _figures(run)
        if figure not in figures:  # names come from the folder listing, never a path built from the request
            raise RunError(f"no figure '{figure[:80]}' in the run {name}",
                           hint="one of " + (", ".join(figures) or "none"))
        return read_bytes(run / "plots" / f"{figure}.png", within=run)

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

    def study_plot(self, name: str, plot: str) -> bytes:
        folder = self.path_of(name)
        plots = _figures(folder)
        if plot not in plots:
            raise RunError(f"no plot '{plot[:80]}' in the study {name}", hint="one of " + (", ".join(plots) or "none"))
        return read_bytes(folder / "plots" / f"{plot}.png", within=folder)


def _figures(folder: Path) -> list[str]:
    """The PNGs in a run's (or study's) plots/ that are regular files inside the folder (a link out of it,
    or a plots/ that is itself a link elsewhere, lists nothing): learning curves first, then by name."""
    plots = folder / "plots"
    if not plots.is_dir() or not _inside(plots, folder):
        return []
    names = sorted(p.stem for p in plots.glob("*.png") if p.is_file() and _inside(p, folder))
    return sorted(names, key=lambda n: (n != "learning_curves", n))


def _inside(path: Path, folder: Path) -> bool:
    real, root = Path(os.path.realpath(path)), Path(os.path.realpath(folder))
    return root in real.parents


def _text(path: Path, problems: list[str] | None) -> str | None:
    """A text file of the folder for display (recipe.yaml, best.yaml), bounded and contained."""
    try:
        return read_text(path, within=path.parent, errors="replace")
    except FileNotFoundError:
        return None
    except (RunError, OSError) as e:
        if problems is not None:
            problems.append(str(e).replace(str(path.parent) + os.sep, ""))
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
