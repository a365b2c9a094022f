"""``danlu explain``: why a run predicted what it did, for inputs, its top losses, or (tables) globally.

Registered from cli.py; torch, Captum and matplotlib are imported only when the verb runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from danlu.cli.output import print_json


def cmd_explain(a: argparse.Namespace) -> None:
    from danlu.errors import DanluError
    from danlu.explanations import METHODS

    if a.method not in METHODS:
        from danlu.errors import unknown_name

        raise unknown_name("method", a.method, METHODS)
    from danlu.cli.checks import bounded, output_folder
    from danlu.explanations.views import MAX_TOP_LOSSES

    bounded("--top-k", a.top_k, 1, 1000)
    bounded("--top-losses", a.top_losses, 1, MAX_TOP_LOSSES)
    bounded("--steps", a.steps, 1, 4096)
    output_folder(a.out, "--out")
    modes = sum([bool(a.inputs or a.file), a.top_losses is not None, a.global_importance])
    if modes != 1:
        raise DanluError("explain takes inputs, or --top-losses K, or --global (one of them)",
                         hint="danlu explain RUN image.png | \"some text\" | rows.csv | --top-losses 16 | --global")
    from danlu.explanations.api import Explainer, write_outputs

    explainer = Explainer.load(a.run, a.method, a.runs_dir, a.steps)
    kind = explainer.schema.kind
    out = Path(a.out)
    if a.global_importance or a.top_losses is not None:
        from danlu.explanations import views

        if a.global_importance:
            result = views.global_importance(explainer, a.data_dir, out)
        else:
            result = views.top_losses(explainer, a.top_losses, a.data_dir, out, a.top_k)
            from danlu.explanations.api import public_row

            result["explanations"] = [public_row(r) for r in result["explanations"]]
            if not a.json:
                _print_records(result["explanations"], kind, out / result["grid"])
        if a.json:
            print_json(result)
        elif a.global_importance:
            from danlu.printable import terminal_safe as safe

            print(f"{result['measure']} on {result['samples']} {result['split']} rows:")
            for r in result["importance"][:30]:
                print(f"  {safe(r['feature']):<30} {r['importance']:+.4f}")
            print(f"wrote {out / result['chart']}")
        return
    from danlu.cli.inputs import collect_inputs

    inputs = collect_inputs(a, kind)
    skipped: list[str] = []
    from danlu.explanations.api import explain

    result = explain(a.run, inputs, method=a.method, target=a.target, top_k=a.top_k, out=None,
                     runs_dir=a.runs_dir, data_dir=a.data_dir, steps=a.steps, skipped=skipped)
    for problem in skipped:
        print(f"skipped {problem}", file=sys.stderr)
    rows = write_outputs(result["explanations"], kind, out, result["method"], result.get("audio"))
    if a.json:
        print_json({"method": result["method"], "out": str(out), "explanations": rows})
        return
    _print_records(rows, kind, out / "explanations.json")


def _print_records(rows: list[dict], kind: str, where: Path) -> None:
    from danlu.explanations.api import caption
    from danlu.printable import terminal_safe as safe

    colour = sys.stdout.isatty()
    for row in rows:
        print(f"{safe(row['input'])}\t{safe(caption(row))}")
        if "warning" in row:
            print(f"  warning: {row['warning']}", file=sys.stderr)
        if kind == "text":
            pairs = [(t, s) for t, s in row["tokens"]]
            if colour:
                from danlu.explanations.text import terminal_line

                print("  " + terminal_line(pairs))
            strongest = sorted(pairs, key=lambda p: -abs(p[1]))[:8]
            print("  strongest: " + "  ".join(f"{safe(t)} {s:+.3f}" for t, s in strongest))
        elif kind == "tabular":
            strongest = sorted(row["features"], key=lambda p: -abs(p[1]))[:8]
            print("  strongest: " + "  ".join(f"{safe(n)} {s:+.3f}" for n, s in strongest))
    print(f"wrote {where}")


def add_explain_verb(sub: argparse._SubParsersAction,
                     common: Callable[[argparse.ArgumentParser], None]) -> None:
    from danlu.explanations import METHODS

    ex = sub.add_parser("explain", help="why a run predicted that: heat maps, token colours, feature bars")
    ex.add_argument("run")
    ex.add_argument("inputs", nargs="*", help="image files/folders, texts, CSV files or rows; - reads stdin")
    ex.add_argument("--file", help="read inputs from a file (one text per line)")
    ex.add_argument("--method", default="auto", help=f"{', '.join(METHODS)} (auto: Guided Grad-CAM for danlu's "
                                                     "CNNs, Grad-CAM for other conv nets, else integrated gradients)")
    ex.add_argument("--target", help="the label to explain (default: the predicted one)")
    ex.add_argument("--top-k", type=int, default=3, help="labels shown per input")
    ex.add_argument("--steps", type=int, default=None, help="integrated-gradients steps (32 for images/texts)")
    ex.add_argument("--out", default="explanations", help="folder for the PNGs/HTML and explanations.json")
    ex.add_argument("--top-losses", type=int, metavar="K", help="the K validation examples the model got most wrong")
    ex.add_argument("--global", dest="global_importance", action="store_true",
                    help="a table model's feature importance on the validation split")
    ex.add_argument("--json", action="store_true")
    common(ex)
    ex.set_defaults(func=cmd_explain)
