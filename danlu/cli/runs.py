"""``danlu runs``: list runs, show one, compare several."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable

from danlu.cli.output import print_json


def cmd_runs(a: argparse.Namespace) -> None:
    from danlu.runs.files import read_json
    from danlu.runs.folder import run_summary
    from danlu.runs.store import list_runs, read_run_recipe, resolve_run

    if a.action == "compare":
        from danlu.cli.studio import cmd_compare

        return cmd_compare(a)
    if len(a.run) > 1:
        from danlu.errors import DanluError

        raise DanluError(f"runs {a.action} takes one RUN, got {len(a.run)}",
                         hint="compare runs with: danlu runs compare A B")
    a.run = a.run[0] if a.run else None

    if a.action == "show":
        from danlu.errors import DanluError

        if not a.run:
            raise DanluError("runs show needs a RUN", hint="danlu runs lists them")
        run = resolve_run(a.run, a.runs_dir)
        from danlu.compress.lineage import describe, describe_int8, int8_variant, read_lineage

        lineage = read_lineage(run)  # where a pruned or distilled run came from
        int8 = int8_variant(run)  # model.int8.onnx beside the model (danlu compress --quantize int8)

        def read_object(name: str) -> dict:
            data = read_json(run / name)
            if not isinstance(data, dict):
                raise DanluError(f"{run / name} is damaged: expected a JSON object, got {type(data).__name__}",
                                 hint="restore it from a copy, or evaluate the run again: danlu evaluate RUN")
            return data

        if a.json:
            shown = {"run": str(run), "recipe": read_run_recipe(run)}
            if (run / "status.json").exists():
                shown["status"] = read_object("status.json")
            if (run / "report.json").exists():
                shown["metrics"] = read_object("report.json").get("metrics", {})
            if lineage is not None:
                shown["lineage"] = lineage
            if int8 is not None:
                shown["int8"] = int8
            print_json(shown)
            return
        print(f"run: {run}")
        if lineage is not None:
            print(f"lineage: {describe(lineage)}")
        if int8 is not None:
            print(describe_int8(int8))
        from danlu.printable import terminal_safe
        from danlu.runs.files import read_text

        read_run_recipe(run)  # parsed through the bounded loader first: a damaged or hostile one is exit 2
        print(terminal_safe(read_text(run / "recipe.yaml", within=run), keep_newlines=True))
        for name in ("status.json", "report.json"):
            if (run / name).exists():
                data = read_object(name)
                data = data.get("metrics", data) if name == "report.json" else data
                print(f"{name}: {json.dumps(data, ensure_ascii=False)}")
        return
    runs = list_runs(a.runs_dir)
    if a.json:
        print_json([run_summary(r) for r in runs])
        return
    if not runs:
        print(f"no runs in {a.runs_dir or 'runs'}/ — try: danlu train digits-mlp")
        return
    for r in runs:
        s = run_summary(r)
        m = s.get("metrics", {})
        key = {k: m[k] for k in ("accuracy", "f1_macro", "r2", "mae", "recall@20", "ndcg@20", "rmse") if k in m}
        why = f"  ({s.get('error', '').replace(str(r) + os.sep, '')[:100]})" if s.get("status") == "damaged" else ""
        from danlu.printable import terminal_safe  # a folder name may hold a newline, ESC or a bidi override

        print(f"{terminal_safe(s['run']):<48} {terminal_safe(s.get('status', '?')):<10} "
              + "  ".join(f"{k} {v:.4f}" for k, v in key.items()) + terminal_safe(why))


def add_runs_verb(sub: argparse._SubParsersAction, common: Callable[[argparse.ArgumentParser], None]) -> None:
    r = sub.add_parser("runs", help="list runs, or: danlu runs show RUN, danlu runs compare A B [C ...]")
    r.add_argument("action", nargs="?", choices=["list", "show", "compare"], default="list")
    r.add_argument("run", nargs="*")
    r.add_argument("--json", action="store_true")
    from danlu.cli.studio import add_compare_options

    add_compare_options(r)
    common(r)
    r.set_defaults(func=cmd_runs)
