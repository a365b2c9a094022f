"""``danlu tune``: hyperparameter search over a recipe's tune: block, and ``danlu tune show STUDY``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from danlu.cli.output import print_json


def cmd_tune(a: argparse.Namespace) -> None:
    from danlu.errors import DanluError
    from danlu.tuning import show, table, tune

    if a.recipe == "show":
        if len(a.overrides) != 1:
            raise DanluError("tune show needs one STUDY name", hint="danlu tune show digits-mlp-study")
        result, best_yaml = show(a.overrides[0], storage=a.storage, runs_dir=a.runs_dir)
        if a.json:
            print_json(result.as_json())
            return
        print(table(result))
        print(f"\nstudy {result.study}: " + ", ".join(f"{n} {k}" for k, n in result.counts.items() if n))
        if best_yaml:
            print(f"\nbest recipe ({result.folder / 'best.yaml'}):\n{best_yaml}")
        return
    say = (lambda msg: None) if a.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    result = tune(a.recipe, a.overrides, trials=a.trials, sampler=a.sampler, pruner=a.pruner, study=a.study,
                  storage=a.storage, timeout=a.timeout, metric=a.metric, runs_dir=a.runs_dir, data_dir=a.data_dir,
                  say=say)
    if a.json:
        print_json(result.as_json())
        return
    print(table(result))
    counts = ", ".join(f"{n} {k}" for k, n in result.counts.items() if n)
    print(f"\nstudy {result.study} in {result.folder}: {counts}")
    if result.best:
        print(f"best: trial {result.best['trial']}, {result.metric} {result.best['value']:.4f}; "
              f"train it with: danlu train {result.folder / 'best.yaml'}")


def add_tune_verb(sub: argparse._SubParsersAction, common: Callable[[argparse.ArgumentParser], None]) -> None:
    tu = sub.add_parser("tune", help="hyperparameter search over a recipe's tune: block (Optuna), or: "
                                     "danlu tune show STUDY")
    tu.add_argument("recipe", help="built-in recipe name or YAML file with a tune: block; or 'show'")
    tu.add_argument("overrides", nargs="*", help="dotted overrides (or, after 'show', the STUDY name)")
    tu.add_argument("--trials", type=int, default=20, help="finished trials the study runs to, in total (20)")
    tu.add_argument("--sampler", default="tpe", help="tpe, random or grid (grid needs choices)")
    tu.add_argument("--pruner", default="median", help="median, hyperband or none")
    tu.add_argument("--study", help="study name, also its folder under --runs-dir (RECIPE-study)")
    tu.add_argument("--storage", help="Optuna storage: an RDB URL (postgresql://user:pass@host/db) shared by "
                                      "processes on many machines; default: a journal file in the study folder")
    tu.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    tu.add_argument("--metric", help="the validation metric to optimize (default: the recipe's monitor)")
    tu.add_argument("--json", action="store_true", help="print one JSON object (study, best, trial counts) last")
    tu.add_argument("--quiet", action="store_true", help="no line per trial")
    common(tu)
    tu.set_defaults(func=cmd_tune)
