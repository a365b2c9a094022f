"""``danlu tune``: hyperparameter search on Optuna over a recipe's ``tune:`` block.

Each trial is a normal run folder (``runs/<study>/trial-NNNN/``) trained through ``danlu.train`` with a
callback that reports the validation metric every epoch and stops the run when the pruner says so. The
study lives in Optuna's storage, not in the process: a journal file in the study folder by default (safe
for several processes on one machine, where SQLite says "database is locked"), or any RDB URL
(``postgresql://...``) that processes on many machines share. Killed and started again with the same
command, a study keeps its finished trials, marks the killed one failed and runs until N have finished.

    danlu tune digits-mlp --trials 30                         # TPE + median pruning, runs/digits-mlp-study/
    danlu tune digits-mlp --trials 60 --study s1 --storage postgresql://user@host/db   # on each machine
    danlu tune show s1
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from danlu.errors import DanluError, RecipeError, did_you_mean, unknown_name
from danlu.recipe import Recipe, TuneParam, load_recipe
from danlu.runs.files import atomic_write_text, write_json
from danlu.runs.store import RUNS_DIR
from danlu.training.hooks import Callback, Stop

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "hyperband", "none")
JOURNAL = "journal.log"
MAX_GRID = 10_000  # points a grid may have (an int range is enumerated)


@dataclass
class TuneResult:
    study: str
    folder: Path
    direction: str
    metric: str
    best: dict[str, Any] | None  # {"value", "params", "run", "trial"}
    counts: dict[str, int]
    trials: list[dict[str, Any]]

    def as_json(self) -> dict[str, Any]:
        best = None if self.best is None else {k: self.best[k] for k in ("value", "params", "run")}
        return {"study": self.study, "best": best,
                "trials": {k: self.counts.get(k, 0) for k in ("complete", "pruned", "failed")}}


class ReportAndPrune(Callback):
    """Reports the objective after every epoch; a trial the pruner gives up on stops, marked pruned."""

    def __init__(self, trial: Any, metric: str):
        self.trial, self.metric = trial, metric

    def on_epoch_end(self, loop: Any, metrics: dict[str, float]) -> None:
        value = metrics.get(self.metric)
        if value is not None and math.isfinite(value):
            self.trial.report(float(value), step=loop.epoch)

    def should_stop(self, loop: Any) -> Stop | None:
        if loop.epoch < loop.epochs and self.trial.should_prune():
            return Stop(f"pruned after epoch {loop.epoch}: {self.metric} is behind the study's other trials",
                        status="pruned")
        return None


# ---------------------------------------------------------------- the search space


def encode(value: Any) -> Any:
    """Optuna's categorical choices must be scalars: lists (layer sizes) travel as JSON strings."""
    return value if value is None or isinstance(value, bool | int | float | str) else json.dumps(value)


def decode(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def suggest(trial: Any, key: str, param: TuneParam) -> Any:
    if param.choices is not None:
        return decode(trial.suggest_categorical(key, [encode(c) for c in param.choices]))
    if param.is_int:
        return trial.suggest_int(key, int(param.low), int(param.high), step=int(param.step or 1), log=param.log)
    return trial.suggest_float(key, float(param.low), float(param.high), step=param.step, log=param.log)


def grid_space(space: dict[str, TuneParam]) -> dict[str, list[Any]]:
    """The grid of a space of choices (and integer ranges); continuous ranges are refused."""
    out = {}
    for key, p in space.items():
        if p.choices is not None:
            out[key] = [encode(c) for c in p.choices]
        elif p.is_int and not p.log:
            out[key] = list(range(int(p.low), int(p.high) + 1, int(p.step or 1)))
        else:
            raise RecipeError(f"tune.{key}: --sampler grid needs choices, and this is a continuous range "
                              f"({p.low:g} to {p.high:g})",
                              hint=f"give it choices, e.g. tune.{key}: {{choices: [{p.low:g}, {p.high:g}]}}, "
                                   "or use --sampler tpe or random")
    size = math.prod(len(v) for v in out.values())
    if size > MAX_GRID:
        raise RecipeError(f"the grid has {size:,} points (more than {MAX_GRID:,})",
                          hint="give fewer choices, or use --sampler tpe or random")
    return out


def objective_metric(recipe: Recipe, schema: Any, metric: str | None) -> str:
    """The recipe's monitor on the validation split, or ``metric``; never a test-split number."""
    from danlu.training.loop import metric_names, monitor_name

    valid = [m for m in metric_names(schema) if m.startswith("val_")]
    name = metric or monitor_name(recipe, schema, has_val=True)
    if name not in valid:
        raise DanluError(f"unknown --metric '{name}'" if metric else f"train.monitor '{name}' is not a validation "
                         "metric, and a search is scored on the validation split",
                         hint=f"{did_you_mean(name, valid)}for {schema.task} it is one of: {', '.join(valid)}")
    return name


# ---------------------------------------------------------------- storage


def redact(url: str) -> str:
    """A storage URL without its password, for files and messages."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def open_storage(storage: str | None, folder: Path) -> tuple[Any, str]:
    """(Optuna storage, its description). An RDB URL is connected to now, so an unreachable one fails
    before any folder is made; anything else is a journal file (the default: one in the study folder)."""
    import optuna

    if storage and _in_memory(storage):
        raise DanluError(f"--storage {storage} is an in-memory database: each connection (the trials', the "
                         "heartbeat's) would see an empty one of its own",
                         hint="use a file, e.g. --storage sqlite:///study.db, or leave --storage out (a journal "
                              "file in the study folder)")
    if storage and "://" in storage and not storage.startswith("journal://"):
        import random
        import warnings

        for attempt in range(6):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # Optuna marks the heartbeat experimental
                    return optuna.storages.RDBStorage(storage, heartbeat_interval=15, grace_period=60,
                                                      engine_kwargs={"pool_pre_ping": True}), redact(storage)
            except Exception as e:  # sqlalchemy / the driver raise their own types for a bad URL or a dead server
                # workers started together on a fresh database race to create Optuna's tables: the loser
                # sees a duplicate key, and the tables are there when it tries again
                if type(e).__name__ == "IntegrityError" and attempt < 5:
                    time.sleep(0.2 + random.random() * 0.5)
                    continue
                first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
                raise DanluError(f"cannot open the study storage {redact(storage)} ({type(e).__name__}: {first})",
                                 hint="check the URL, that the database server is running and reachable, and "
                                      "that its driver is installed (postgresql:// needs psycopg)") from None
    path = Path(storage.removeprefix("journal://")) if storage else folder / JOURNAL
    return _journal(path), f"journal file {path}"


MAX_STUDY_NAME = 200  # bytes: the study folder's name, with room under NAME_MAX (255) for what is added to it


def check_study_name(name: str) -> None:
    """A study name is a folder name: no separators or control characters, not . or .., at most
    MAX_STUDY_NAME bytes; else a DanluError (exit 2) saying so."""
    import unicodedata

    from danlu.printable import terminal_safe

    shown = terminal_safe(name if len(name) <= 80 else name[:80] + "...")
    size = len(name.encode("utf-8", "surrogateescape"))
    if not name or any(c in name for c in "/\\") or name in (".", "..") \
            or any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in name):
        raise DanluError(f"--study '{shown}' is not a folder name",
                         hint="letters, digits, - and _ (no slashes or control characters)")
    if size > MAX_STUDY_NAME:
        raise DanluError(f"--study '{shown}' is too long ({size:,} bytes; at most {MAX_STUDY_NAME})",
                         hint="give a shorter --study name")


def _in_memory(storage: str) -> bool:
    """sqlite:// or sqlite:///:memory: (any driver, any query string)."""
    scheme, _, rest = storage.partition("://")
    if not scheme.lower().startswith("sqlite"):
        return False
    database = rest.split("?", 1)[0].lstrip("/")
    return database in ("", ":memory:") or database.startswith("file::memory:")


def _journal(path: Path) -> Any:
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))


def _process_start(pid: int) -> str | None:
    """When a process started (clock ticks since boot), so a reused pid is not taken for the old process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _owner() -> dict[str, Any]:
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "pid_start": _process_start(pid)}


def fail_killed_trials(study: Any) -> list[int]:
    """Trials still "running" whose process on this machine is gone (SIGKILL, a crash) become failed.
    Trials of other machines are left to the storage's heartbeat (RDB) or to their own process."""
    import optuna

    host = socket.gethostname()
    failed = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        owner = t.user_attrs.get("owner") or {}
        if owner.get("host") != host:
            continue
        pid = owner.get("pid")
        alive = isinstance(pid, int) and _process_start(pid) is not None and _process_start(pid) == owner.get(
            "pid_start")
        if not alive:
            study._storage.set_trial_user_attr(t._trial_id, "error", "its process ended while it ran (killed?)")
            study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
            failed.append(t.number)
    return failed


# ---------------------------------------------------------------- the search


def tune(recipe: str | Path | Recipe = "digits-mlp", overrides: list[str] | tuple[str, ...] = (), *,
         trials: int = 20, sampler: str = "tpe", pruner: str = "median", study: str | None = None,
         storage: str | None = None, timeout: float | None = None, metric: str | None = None,
         runs_dir: Path | None = None, data_dir: Path | None = None, say: Any = None) -> TuneResult:
    """Search the recipe's ``tune:`` space until ``trials`` trials have finished in the study (pruned ones
    count; failed ones do not), or ``timeout`` seconds pass. Returns the study's summary."""
    from danlu.metrics import higher_is_better
    from danlu.prepare import prepare

    say = say or (lambda msg: None)
    _check_settings(sampler, pruner, trials, timeout)
    recipe = _searchable(recipe, overrides)
    name = _study_name(study, recipe)
    from danlu.recommend import is_recommendation

    if is_recommendation(recipe):  # user-item tables: their runs log val_recall@k, val_ndcg@k ... (or val_rmse)
        from danlu.recommend.train import checked_objective

        objective_name = checked_objective(recipe.without_tune(), metric, data_dir)
    else:
        _, schema, _ = prepare(recipe.without_tune(), data_dir)  # the data is readable, before any folder exists
        objective_name = objective_metric(recipe, schema, metric)
    direction = "maximize" if higher_is_better(objective_name) else "minimize"
    folder = Path(runs_dir or RUNS_DIR) / name
    opened, where = _open_study(name, folder, storage, objective_name, direction, sampler, pruner, recipe)
    write_json(folder / "tune.json", {"study": name, "recipe": recipe.name, "metric": objective_name,
                                      "direction": direction, "storage": where, "sampler": sampler,
                                      "pruner": pruner})
    killed = fail_killed_trials(opened)
    if killed:
        say(f"marked failed: trial(s) {', '.join(map(str, killed))}, whose process ended while they ran")
    base = recipe.without_tune().to_dict()
    if _finished(opened) < trials:
        objective = _Objective(recipe.tune, base, folder, objective_name, direction, data_dir, say)
        opened.optimize(objective, timeout=timeout, callbacks=[_StopRule(trials, say)], catch=(DanluError,),
                        gc_after_trial=False)
    result = summarize(opened, folder, objective_name, base)
    write_results(result, opened, base)
    return result


def _check_settings(sampler: str, pruner: str, trials: Any, timeout: float | None) -> None:
    if sampler not in SAMPLERS:
        raise unknown_name("sampler", sampler, SAMPLERS)
    if pruner not in PRUNERS:
        raise unknown_name("pruner", pruner, PRUNERS)
    if not isinstance(trials, int) or trials < 1:
        raise DanluError(f"--trials must be a positive number of trials, got {trials}")
    if timeout is not None and not (timeout > 0 and math.isfinite(timeout)):
        raise DanluError(f"--timeout must be a positive number of seconds, got {timeout}")


def _searchable(recipe: Any, overrides: Any) -> Recipe:
    """The recipe with its overrides and absolute paths; refused without a search space."""
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(str(recipe), list(overrides))
    elif overrides:
        recipe = load_recipe(base=recipe.to_dict(), overrides=list(overrides))
    recipe = recipe.with_absolute_paths()
    if not recipe.tune:
        raise RecipeError(f"recipe {recipe.name} has no search space (an empty or missing tune: block)",
                          hint="add one, e.g. tune: {train.lr: {low: 1.0e-4, high: 0.1, log: true}} "
                               "(danlu recipes digits-mlp shows a recipe with one)")
    return recipe


def _study_name(study: str | None, recipe: Recipe) -> str:
    name = study or f"{recipe.name}-study"
    check_study_name(name)
    return name


def _open_study(name: str, folder: Path, storage: str | None, metric: str, direction: str, sampler: str,
                pruner: str, recipe: Recipe) -> tuple[Any, str]:
    """The study (created or loaded) and where it is stored; a folder made for it is removed again when
    opening fails."""
    import optuna

    if folder.exists() and not folder.is_dir():
        raise DanluError(f"{folder} is a file, not a study folder", hint="give another --study or --runs-dir")
    made = not folder.exists()
    grid = grid_space(recipe.tune) if sampler == "grid" else None
    try:
        store, where = open_storage(storage, folder)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        opened = optuna.create_study(study_name=name, storage=store, direction=direction, load_if_exists=True,
                                     sampler=_sampler(sampler, grid, recipe.seed, fresh=storage is None),
                                     pruner=_pruner(pruner, recipe.train.epoch_count))
    except BaseException:
        if made and folder.exists():
            import shutil

            shutil.rmtree(folder, ignore_errors=True)  # nothing half-made is left behind
        raise
    if opened.direction.name.lower() != direction:
        raise DanluError(f"study '{name}' already exists and {opened.direction.name.lower()}s; "
                         f"{metric} is to {direction}", hint="give another --study name")
    folder.mkdir(parents=True, exist_ok=True)
    return opened, where


class _Objective:
    """One trial: its recipe from the sampled values, trained into trial-NNNN/, scored by its best epoch."""

    def __init__(self, space: dict[str, Any], base: dict[str, Any], folder: Path, metric: str, direction: str,
                 data_dir: Path | None, say: Any):
        self.space, self.base, self.folder, self.metric = space, base, folder, metric
        self.direction, self.data_dir, self.say = direction, data_dir, say

    def __call__(self, trial: Any) -> float:
        import optuna

        trial.set_user_attr("owner", _owner())
        params = {key: suggest(trial, key, p) for key, p in self.space.items()}
        result = self._train(trial, params)
        from danlu.runs.folder import RunFolder

        history = RunFolder(result.run).history()
        trial.set_user_attr("epochs", len(history))
        values = [h[self.metric] for h in history if math.isfinite(h.get(self.metric, math.nan))]
        if not values:
            trial.set_user_attr("error", f"no finite {self.metric} in any epoch")
            raise DanluError(f"trial {trial.number}: no finite {self.metric} in any epoch")
        best = max(values) if self.direction == "maximize" else min(values)
        shown = "  ".join(f"{k}={_short(v)}" for k, v in params.items())
        if result.status == "pruned":
            self.say(f"trial {trial.number}: pruned after epoch {len(history)}  {self.metric} {best:.4f}  {shown}")
            raise optuna.TrialPruned()
        self.say(f"trial {trial.number}: {self.metric} {best:.4f}  ({len(history)} epochs)  {shown}")
        return best

    def _train(self, trial: Any, params: dict[str, Any]) -> Any:
        from danlu.api import train

        run_dir = self.folder / f"trial-{trial.number:04d}"
        trial.set_user_attr("run", str(run_dir.resolve()))
        assigned = [f"{key}={json.dumps(v)}" for key, v in params.items()] + [f"train.monitor={self.metric}"]
        try:
            trial_recipe = load_recipe(base=self.base, overrides=assigned)
            return train(trial_recipe, run_dir=run_dir, data_dir=self.data_dir, progress=False, plots=False,
                         resumable=False, callbacks=[ReportAndPrune(trial, self.metric)])
        except DanluError as e:  # the trial fails (Optuna records it) and the search goes on
            trial.set_user_attr("error", str(e).splitlines()[0][:300])
            raise


class _StopRule:
    """Stops the search once ``trials`` trials finished, or after 5 failures in a row (say why)."""

    def __init__(self, trials: int, say: Any):
        self.trials, self.say, self.failed_in_a_row = trials, say, 0

    def __call__(self, study: Any, frozen: Any) -> None:
        import optuna

        failed = frozen.state == optuna.trial.TrialState.FAIL
        self.failed_in_a_row = self.failed_in_a_row + 1 if failed else 0
        if failed:
            self.say(f"trial {frozen.number}: failed ({frozen.user_attrs.get('error', 'see above')})")
        if self.failed_in_a_row >= 5:
            self.say("stopping: 5 trials in a row failed")
            study.stop()
        if _finished(study) >= self.trials:
            study.stop()


def _finished(study: Any) -> int:
    import optuna

    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=states))


def _short(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else json.dumps(v) if isinstance(v, list | dict) else str(v)


def _sampler(name: str, grid: dict | None, seed: int, fresh: bool) -> Any:
    """Seeded with the recipe's seed for a study on the default local storage (reproducible); a worker of
    a shared study mixes in its pid, or every worker would propose the same points."""
    import optuna

    s = seed if fresh else (seed * 1_000_003 + os.getpid()) % 2**32
    if name == "grid":
        return optuna.samplers.GridSampler(grid, seed=s)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=s)
    return optuna.samplers.TPESampler(seed=s, n_startup_trials=5)


def _pruner(name: str, epochs: int) -> Any:
    import optuna

    if name == "median":  # after every epoch, once 5 trials have finished: behind their median at that epoch stops
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(1, epochs))
    return optuna.pruners.NopPruner()


# ---------------------------------------------------------------- results


def summarize(study: Any, folder: Path, metric: str, base: dict) -> TuneResult:
    import optuna

    rows, counts = [], {"complete": 0, "pruned": 0, "failed": 0, "running": 0, "waiting": 0}
    for t in study.get_trials(deepcopy=False):
        state = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed"}.get(t.state.name, t.state.name.lower())
        counts[state] = counts.get(state, 0) + 1
        value = t.value if t.state == optuna.trial.TrialState.COMPLETE else (
            t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None)
        duration = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and \
            t.datetime_start else None
        rows.append({"number": t.number, "state": state, "value": value,
                     "params": {k: decode(v) for k, v in t.params.items()}, "run": t.user_attrs.get("run"),
                     "epochs": t.user_attrs.get("epochs"), "duration_s": duration,
                     **({"error": t.user_attrs["error"]} if "error" in t.user_attrs else {})})
    best = None
    try:
        b = study.best_trial
        best = {"value": b.value, "params": {k: decode(v) for k, v in b.params.items()},
                "run": b.user_attrs.get("run"), "trial": b.number}
    except ValueError:  # no complete trial yet
        pass
    return TuneResult(study.study_name, folder, study.direction.name.lower(), metric, best, counts, rows)


def best_recipe(base: dict, best: dict[str, Any]) -> Recipe:
    assigned = [f"{key}={json.dumps(v)}" for key, v in best["params"].items()]
    return load_recipe(base=base, overrides=assigned)


def write_results(result: TuneResult, study: Any, base: dict) -> None:
    """study.json, best.yaml (trainable as is) and the study's figures, in the study folder."""
    folder = result.folder
    notes: list[str] = []
    out = {"study": result.study, "metric": result.metric, "direction": result.direction, "best": result.best,
           "counts": result.counts, "trials": result.trials, "notes": notes}
    if result.best is not None:
        recipe = best_recipe(base, result.best)
        header = (f"# The best trial of study {result.study}: trial {result.best['trial']}, "
                  f"{result.metric} {result.best['value']:.4f}.\n# Train it: danlu train {folder / 'best.yaml'}\n")
        atomic_write_text(folder / "best.yaml", header + recipe.to_yaml())
    notes += draw_figures(study, folder / "plots")
    write_json(folder / "study.json", _json_safe(out))


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_json_safe(v) for v in obj]
    return obj


def draw_figures(study: Any, pdir: Path) -> list[str]:
    """Optimization history, parameter importances, parallel coordinates (Optuna's matplotlib plots);
    a figure that cannot be drawn (too few trials) becomes a note."""
    import io
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    from danlu.runs.files import atomic_write_bytes

    notes = []
    for name, draw in (("history", ovm.plot_optimization_history), ("importances", ovm.plot_param_importances),
                       ("parallel_coordinates", ovm.plot_parallel_coordinate)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
                ax = draw(study)
            fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
            fig.set_size_inches(8, 5)
            fig.tight_layout()
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=100)
            plt.close(fig)
            atomic_write_bytes(pdir / f"{name}.png", buf.getvalue())
        except Exception as e:  # noqa: BLE001 - Optuna raises several types when there is too little to plot
            notes.append(f"figure {name} not drawn: {str(e).splitlines()[0][:160] if str(e) else type(e).__name__}")
            plt.close("all")
    return notes


def show(study: str, *, storage: str | None = None, runs_dir: Path | None = None) -> tuple[TuneResult, str]:
    """A study's summary from its storage, and its best recipe as YAML ("" when no trial completed)."""
    import optuna

    check_study_name(study)
    folder = Path(runs_dir or RUNS_DIR) / study
    info = {}
    if (folder / "tune.json").is_file():
        from danlu.runs.files import read_json

        info = read_json(folder / "tune.json")
    if storage is None and not (folder / JOURNAL).is_file():
        raise DanluError(f"no study '{study}' in {folder.parent}",
                         hint="give the --runs-dir it ran in, or --storage for a study in a database")
    store, _ = open_storage(storage, folder)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        opened = optuna.load_study(study_name=study, storage=store)
    except KeyError:
        raise DanluError(f"the storage has no study named '{study}'") from None
    result = summarize(opened, folder, info.get("metric", "value"), {})
    from danlu.runs.files import read_text

    best_yaml = read_text(folder / "best.yaml", within=folder) if (folder / "best.yaml").is_file() else ""
    return result, best_yaml


def table(result: TuneResult) -> str:
    """The trials as aligned text, best first within each state."""
    params = sorted({k for t in result.trials for k in t["params"]})
    head = ["trial", "state", result.metric, "epochs", *params]
    rows = [head]
    for t in result.trials:
        rows.append([str(t["number"]), t["state"], "" if t["value"] is None else f"{t['value']:.4f}",
                     str(t["epochs"] or ""), *(_short(t["params"].get(k, "")) for k in params)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


__all__ = ["tune", "show", "table", "TuneResult", "ReportAndPrune"]
