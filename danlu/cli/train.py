"""``danlu train`` and ``danlu evaluate``: a recipe to a trained run, and a run to a report."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from danlu.cli.output import print_json


def cmd_train(a: argparse.Namespace) -> None:
    from danlu.api import train

    if a.recipe is None and a.resume is None:
        from danlu.errors import DanluError

        raise DanluError("train needs a RECIPE, a data PATH (or --resume RUN)",
                         hint="danlu recipes lists the built-in ones; danlu train my_data.csv chooses one")
    from danlu.autorecipe.inspect import looks_like_data

    if a.recipe is not None and a.resume is None and looks_like_data(a.recipe):  # a recipe from the data
        from danlu.cli.auto import cmd_train_data

        return cmd_train_data(a)
    if a.time_limit is not None:
        from danlu.errors import DanluError

        raise DanluError("--time-limit chooses among candidate recipes for a data PATH",
                         hint="danlu train my_data.csv --time-limit 10m; a recipe trains as written")
    overrides = list(a.overrides)
    if a.track:
        overrides.append(f"train.track={json.dumps(a.track)}")
    recipe = a.recipe
    if a.resume is not None and recipe is not None:
        if "=" not in recipe:
            from danlu.errors import DanluError

            raise DanluError(f"--resume continues the run with its own recipe; '{recipe}' is not used",
                             hint=f"danlu train --resume {a.resume}")
        overrides.insert(0, recipe)
    if a.nproc is not None:  # N worker processes through torch.distributed.run, each running this verb
        from danlu.recommend.distributed import check_launch
        from danlu.training.launch import launch

        check_launch(recipe, overrides, a.resume, a.runs_dir)  # a recommender it cannot split: refused once

        code = launch(a)
        if code:
            raise SystemExit(code)
        return
    result = train(recipe or "digits-mlp", overrides, runs_dir=a.runs_dir, data_dir=a.data_dir, resume=a.resume,
                   progress=not a.quiet)
    if not result.writer:  # another rank of a distributed run: rank 0 prints
        return
    from danlu.compress.distilled import write_teacher_table

    write_teacher_table(result.run, data_dir=a.data_dir)  # a distilled run: teacher vs student, timed alike
    if a.json:
        print_json(result.as_json())
    else:
        print((result.run / "report.md").read_text(encoding="utf-8"))
        print(f"run folder: {result.run}  ({result.wall_s:.1f} s)")


def cmd_evaluate(a: argparse.Namespace) -> None:
    from danlu.api import evaluate
    from danlu.evaluation import report_name
    from danlu.recommend.evaluate import parse_ks

    report = evaluate(a.run, a.split, runs_dir=a.runs_dir, data_dir=a.data_dir, k=parse_ks(a.k))
    if a.json:
        print_json({"run": report["run"], "split": a.split, "metrics": report["metrics"],
                    **({"popularity": report["popularity"]} if "popularity" in report else {})})
    else:
        name = report.get("report_name", report_name(a.split))  # a recommendation run's may carry its k
        print((Path(report["run"]) / f"{name}.md").read_text(encoding="utf-8"))


def add_train_verbs(sub: argparse._SubParsersAction, common: Callable[[argparse.ArgumentParser], None]) -> None:
    t = sub.add_parser("train", help="train a recipe: danlu train RECIPE|DATA_PATH [key=value ...]")
    t.add_argument("recipe", nargs="?", help="built-in recipe name or YAML file (danlu recipes); or a data path "
                   "(image folder, CSV/Parquet table, text file or folder): a recipe is chosen from the data")
    t.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.epochs=3 model.hidden=[256,128]")
    t.add_argument("--resume", metavar="RUN", help="continue a run that was interrupted")
    t.add_argument("--time-limit", metavar="DURATION", help="with a data PATH: train the candidate recipes that fit "
                   "in it (10m, 90s, 1h) and keep the best on validation")
    t.add_argument("--json", action="store_true", help="print one JSON object (run, metrics, wall_s) last")
    t.add_argument("--quiet", action="store_true", help="no progress output")
    t.add_argument("--nproc", type=int, metavar="N", help="data-parallel training in N processes on this machine "
                   "(torch.distributed; train.batch_size is the global batch)")
    t.add_argument("--track", action="append", metavar="OUTLET", help="also log to tensorboard (tb/ in the run "
                   "folder) or mlflow (MLFLOW_TRACKING_URI); same as train.track=[...]; repeatable")
    common(t)
    t.set_defaults(func=cmd_train, heavy=True, resume_hint=True)

    e = sub.add_parser("evaluate", help="evaluate a run on a split → report.json, report.md, plots")
    e.add_argument("run")
    e.add_argument("--split", default="test", help="train, val or test")
    e.add_argument("--k", metavar="K[,K...]", help="recommendation runs: the ranking cut-offs, e.g. 10,20,50 "
                   "(default: the recipe's recommend.k); other cut-offs write report[-val]-k10-20-50.json")
    e.add_argument("--json", action="store_true")
    common(e)
    e.set_defaults(func=cmd_evaluate, heavy=True)
