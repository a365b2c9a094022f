"""``danlu train PATH``: inspect, choose, train; with a time budget, train the candidates that fit it and
keep the best on validation, with a leaderboard in the kept run's report.

Each candidate is an ordinary run (its recipe.yaml reruns it); the kept run also gets auto.json (what was
inspected, why, the leaderboard) and an "Automatic choice" section at the end of report.md.
"""

from __future__ import annotations

import math
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from danlu.autorecipe.choose import Candidate, Choice, choose
from danlu.autorecipe.inspect import inspect_data
from danlu.errors import DanluError

MIN_CANDIDATE_S = 20.0  # a candidate gets at least this much of the budget, or is skipped
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h)?\s*$", re.IGNORECASE)


def parse_duration(text: str) -> float:
    """'10m', '90s', '1.5h' or '600' (seconds) → seconds."""
    m = _DURATION.match(str(text))
    if not m or float(m.group(1)) <= 0:
        raise DanluError(f"--time-limit '{text}' is not a duration", hint="e.g. --time-limit 10m, 90s, 1h or 600")
    unit = (m.group(2) or "s").lower()
    return float(m.group(1)) * {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}[unit]


@dataclass
class Entry:
    """One line of the leaderboard."""

    candidate: str
    status: str  # done | skipped | failed
    val: float | None = None
    test: float | None = None
    seconds: float = 0.0
    run: str | None = None
    note: str = ""
    val_samples: int | None = None

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in (None, "")}


@dataclass
class AutoResult:
    result: Any  # the kept run's TrainResult
    choice: Choice
    kept: str
    metric: str
    board: list[Entry] = field(default_factory=list)


def _say(text: str, progress: bool) -> None:
    if progress:
        from danlu.printable import terminal_safe  # paths and column names come from the user's data

        print(terminal_safe(text), file=sys.stderr, flush=True)


def _recipe(candidate: Candidate, choice: Choice, overrides: list[str]):
    from danlu.recipe import load_recipe

    raw = dict(candidate.recipe)
    raw["description"] = ("Chosen by danlu train PATH from the data: " + choice.profile.summary() + ". Why: "
                          + "; ".join([*choice.reasons, *candidate.why]) + ".")
    return load_recipe(base=raw, overrides=overrides)


def _deadline(deadline: float) -> Any:
    """A callback that ends training (the best weights so far are kept and scored) when the next epoch
    would end past the candidate's deadline."""
    from danlu.training.hooks import Callback, Stop

    class Deadline(Callback):
        def __init__(self) -> None:
            self.last, self.epoch_s = time.monotonic(), 0.0

        def on_epoch_end(self, loop: Any, metrics: dict[str, float]) -> None:
            now = time.monotonic()
            self.epoch_s, self.last = now - self.last, now

        def should_stop(self, loop: Any) -> Stop | None:
            if time.monotonic() + self.epoch_s > deadline:
                return Stop("time limit: the next epoch would end past this candidate's share of --time-limit")
            return None

    return Deadline()


def clearly_better(challenger: float, incumbent: float, metric: str, samples: int | None) -> bool:
    """Whether a validation score beats the incumbent's by more than one standard error of an accuracy on
    ``samples`` rows (sqrt(p(1-p)/n)); recall@k counts as a hit rate over the validation interactions; other
    metrics (R²) need only be higher. On a 32-text val split two models 3 points apart are a coin toss, and
    the default (the cheaper, surer choice) should stay."""
    if metric not in ("accuracy", "recall@20") or not samples:
        return challenger > incumbent
    p = min(max(incumbent, 1 / samples), 1 - 1 / samples)
    return challenger > incumbent + math.sqrt(p * (1 - p) / samples)


def val_metric_name(task: str) -> str:
    return {"classification": "accuracy", "ranking": "recall@20", "recommendation": "recall@20"}.get(task, "r2")


def train_auto(path: str | Path, overrides: list[str] | tuple[str, ...] = (), *, time_limit: float | None = None,
               runs_dir: Path | None = None, data_dir: Path | None = None, progress: bool = True) -> AutoResult:
    """Inspect ``path``, choose recipes, train the default (or, with ``time_limit`` seconds, the candidates that
    fit) and return the kept run."""
    start = time.monotonic()
    profile = inspect_data(path)
    choice = choose(profile)
    _say(f"inspected {profile.path}: {profile.summary()}", progress)
    for reason in choice.reasons:
        _say(f"  {reason}", progress)
    overrides = list(overrides)
    if time_limit is None:
        cand = choice.default
        _say(f"chose {cand.recipe['name']}: " + "; ".join(cand.why), progress)
        others = ", ".join(c.name for c in choice.candidates[1:])
        if others:
            _say(f"  (--time-limit would also try {others} and keep the best on validation)", progress)
        from danlu.api import train

        result = train(_recipe(cand, choice, overrides), runs_dir=runs_dir, data_dir=data_dir, progress=progress)
        metric = val_metric_name(result.report.get("task", profile.task) if result.report else profile.task)
        # boosted trees record every 20th round and are refit on train + val: no held-out score to show then
        val = _best_val(result.run, metric)
        entry = Entry(cand.name, "done", val=val, test=result.metrics.get(metric), seconds=result.wall_s,
                      run=str(result.run), note="" if val is not None else "val: see metrics.jsonl")
        out = AutoResult(result, choice, cand.name, metric, [entry])
        _record(out, progress)
        return out
    return _search(choice, overrides, start + time_limit, time_limit, runs_dir, data_dir, progress)


def _best_val(run: Path, metric: str) -> float | None:
    """The validation metric at the run's best epoch, from metrics.jsonl (None when not recorded)."""
    import json

    from danlu.runs.files import read_json

    try:
        status = read_json(run / "status.json")
        if status.get("monitor") == f"val_{metric}" and status.get("best_val") is not None:
            return float(status["best_val"])  # recommendation runs record their best validation score
        best = status.get("best_epoch")
        for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            if row.get("epoch") == best and f"val_{metric}" in row:
                return float(row[f"val_{metric}"])
    except (OSError, ValueError, AttributeError):
        return None
    return None


def _search(choice: Choice, overrides: list[str], deadline: float, budget: float, runs_dir: Path | None,
            data_dir: Path | None, progress: bool) -> AutoResult:
    from danlu.api import evaluate, train

    metric = val_metric_name(choice.profile.task)
    board: list[Entry] = []
    results: dict[str, Any] = {}
    pending = list(choice.candidates)
    _say(f"--time-limit {budget:.0f} s: candidates {', '.join(c.name for c in pending)}; {pending[0].name} is kept "
         f"unless another is clearly better on validation {metric}", progress)
    while pending:
        cand = pending.pop(0)
        left = deadline - time.monotonic()
        share = left * cand.share / (cand.share + sum(c.share for c in pending))
        if share < MIN_CANDIDATE_S:
            board.append(Entry(cand.name, "skipped", note=f"{left:.0f} s of the budget left"))
            continue
        _say(f"candidate {cand.name} (up to {share:.0f} s): " + "; ".join(cand.why), progress)
        t0 = time.monotonic()
        try:
            # boosted trees refit on train + val by default, which would leave no held-out score to compare
            held_out = ["model.refit=false"] if cand.recipe["model"]["name"] == "lightgbm" else []
            recipe = _recipe(cand, choice, [*held_out, *overrides])
            result = train(recipe, runs_dir=runs_dir, data_dir=data_dir, progress=progress,
                           callbacks=[_deadline(time.monotonic() + share)])
            if choice.profile.kind == "interactions":  # scored on validation as it trained (status.json)
                val, n_val = _best_val(result.run, metric), (result.report or {}).get("sizes", {}).get("val")
            else:
                report = evaluate(result.run, "val", runs_dir=runs_dir, data_dir=data_dir)
                val, n_val = report["metrics"].get(metric), report.get("samples")
        except DanluError as e:
            if cand is choice.candidates[0]:  # the default's failure (a bad target, a leak) is the data's: say it
                raise
            # a later candidate that cannot run here (no pretrained weights offline, ...) leaves the others
            board.append(Entry(cand.name, "failed", seconds=time.monotonic() - t0, note=e.message[:160]))
            _say(f"candidate {cand.name} failed: {e.message}", progress)
            continue
        results[cand.name] = result
        board.append(Entry(cand.name, "done", val=val, test=result.metrics.get(metric),
                           seconds=time.monotonic() - t0, run=str(result.run), val_samples=n_val))
    done = [e for e in board if e.status == "done" and e.val is not None]
    if not done:
        raise DanluError(f"no candidate finished within the {budget:.0f} s budget",
                         hint="raise --time-limit, or train without it (the default recipe alone)")
    best = done[0]
    for e in done[1:]:  # the default stays unless another beats it by more than validation's noise
        if clearly_better(e.val, best.val, metric, best.val_samples):
            best = e
    if choice.profile.kind == "tabular" and len(done) > 1:
        kept = _try_ensemble(done, best, board, metric, runs_dir, data_dir, progress)
        if kept is not None:
            best, results["ensemble"] = kept
    out = AutoResult(results[best.candidate], choice, best.candidate, metric, board)
    _record(out, progress)
    return out


def _try_ensemble(done: list[Entry], best: Entry, board: list[Entry], metric: str, runs_dir: Path | None,
                  data_dir: Path | None, progress: bool) -> tuple[Entry, Any] | None:
    """Fit the weights of a blend of the finished candidates on validation (Caruana's greedy selection) and, when
    the blend beats the best single candidate by more than validation's noise, assemble it as a run of its own
    (model table_ensemble: the members' weights copied in, the blend weights in recipe.yaml); that run's
    (entry, TrainResult) is returned to be kept. The leaderboard says which was kept and why either way."""
    from danlu.autorecipe.ensemble import ensemble_entry

    t0 = time.monotonic()
    try:
        found = ensemble_entry({e.candidate: e.run for e in done}, data_dir)
    except (DanluError, ValueError) as e:
        board.append(Entry("ensemble", "failed", seconds=time.monotonic() - t0, note=str(e)[:160]))
        return None
    if found is None:
        board.append(Entry("ensemble", "skipped", seconds=time.monotonic() - t0,
                           note=f"the selection on validation picked {best.candidate} alone"))
        return None
    weights = " + ".join(f"{w:.2f} {n}" for n, w in found["weights"].items())
    _say(f"weighted ensemble {weights}: val {found['val']:.4f} (best single {best.val:.4f})", progress)
    if not clearly_better(found["val"], best.val, metric, best.val_samples):
        board.append(Entry("ensemble", "done", val=found["val"], test=found["test"], seconds=time.monotonic() - t0,
                           note=f"{weights}: not clearly better than {best.candidate} on validation; "
                                f"{best.candidate} kept"))
        return None
    from danlu.api import evaluate, train

    runs = {e.candidate: e.run for e in done}
    try:
        result = train(ensemble_recipe(runs, found["weights"], best.candidate), runs_dir=runs_dir, data_dir=data_dir,
                       progress=progress)
        val = evaluate(result.run, "val", runs_dir=runs_dir, data_dir=data_dir)["metrics"].get(metric)
    except DanluError as e:
        board.append(Entry("ensemble", "failed", seconds=time.monotonic() - t0, note=e.message[:160]))
        return None
    entry = Entry("ensemble", "done", val=val, test=result.metrics.get(metric), seconds=time.monotonic() - t0,
                  run=str(result.run), val_samples=best.val_samples,
                  note=f"{weights}: kept, beats {best.candidate} on validation {metric}"
                       + (" by more than its noise" if metric == "accuracy" else "")
                       + f" ({val:.4f} against {best.val:.4f})")
    board.append(entry)
    return entry, result


def ensemble_recipe(runs: dict[str, str], weights: dict[str, float], best: str) -> Any:
    """The table_ensemble recipe over the member runs (data and seed from the best member's recipe.yaml)."""
    from danlu.recipe import load_recipe
    from danlu.runs.store import read_run_recipe

    members, base = [], read_run_recipe(Path(runs[best]))
    total = sum(weights.values())
    for name, w in weights.items():
        model = dict(read_run_recipe(Path(runs[name]))["model"])
        members.append({"name": model.pop("name"), "weight": w / total, "run": str(Path(runs[name]).resolve()),
                        "options": model})
    members[-1]["weight"] = 1.0 - sum(m["weight"] for m in members[:-1])  # exactly 1 in all
    raw = {"name": "auto-table-ensemble", "seed": base.get("seed", 0), "data": base["data"],
           "description": "A weighted blend of the runs " + ", ".join(f"{n} ({Path(r).name})" for n, r in runs.items()
                                                                    if n in weights)
                          + ", weights fitted on the val split by greedy ensemble selection (danlu train PATH "
                            "--time-limit); the members' weights are copied into model.safetensors",
           "model": {"name": "table_ensemble", "members": members}}
    return load_recipe(base=raw)


def _leaderboard_md(out: AutoResult) -> str:
    rows = ["| candidate | status | val " + out.metric + " | test " + out.metric + " | time (s) | run / note |",
            "| --- | --- | --- | --- | --- | --- |"]
    for e in out.board:
        fmt = (lambda v: "—" if v is None else f"{v:.4f}")
        mark = " (kept)" if e.candidate == out.kept else ""
        where = " ".join(x for x in (Path(e.run).name if e.run else "", e.note) if x)
        rows.append(f"| {e.candidate}{mark} | {e.status} | {fmt(e.val)} | {fmt(e.test)} | {e.seconds:.1f} | {where} |")
    return "\n".join(rows)


def _record(out: AutoResult, progress: bool) -> None:
    """auto.json and the report's "Automatic choice" section in the kept run."""
    from danlu.printable import markdown_text
    from danlu.runs.files import atomic_write_text, write_json

    run = Path(out.result.run)
    cand = next((c for c in out.choice.candidates if c.name == out.kept), None)
    if cand is None:  # the ensemble of the candidates
        cand = Candidate(out.kept, {}, [next(e.note for e in out.board if e.candidate == out.kept)])
    write_json(run / "auto.json", {"profile": out.choice.profile.as_json(), "reasons": out.choice.reasons,
                                   "kept": out.kept, "why": cand.why, "metric": out.metric,
                                   "candidates": [c.name for c in out.choice.candidates],
                                   "leaderboard": [e.as_json() for e in out.board]})
    lines = ["", "## Automatic choice", "",
             f"Inspected: {markdown_text(out.choice.profile.summary())}", ""]
    lines += [f"- {markdown_text(r)}" for r in [*out.choice.reasons, *cand.why]]
    lines += ["", f"Kept: **{out.kept}**; its recipe is recipe.yaml in this folder (edit it and rerun: "
              f"`danlu train {run / 'recipe.yaml'}`).", "", _leaderboard_md(out), ""]
    report = run / "report.md"
    if report.exists():
        atomic_write_text(report, report.read_text(encoding="utf-8") + "\n".join(lines))
    _say(f"kept {out.kept}; recipe: {run / 'recipe.yaml'}", progress)
