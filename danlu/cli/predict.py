"""``danlu predict``: a run's predictions for images, texts or table rows, from arguments, files or stdin."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from danlu.cli.output import print_json


def cmd_predict(a: argparse.Namespace) -> None:
    from danlu.errors import DanluError
    from danlu.predictor import Predictor

    if a.top_k < 1:
        raise DanluError(f"--top-k must be at least 1, got {a.top_k}")
    from danlu.recommend.cli import predict_if_recommendation

    if predict_if_recommendation(a):  # a recommendation run: --user / --items (danlu/recommend/cli.py)
        return
    predictor = Predictor.load(a.run, a.runs_dir)
    if a.backend != "torch":  # the same preprocessing and labels; ONNX Runtime (fp32 or int8) in between
        from danlu.serve.engine import Engine

        predictor.forward = Engine(predictor, a.backend, _backend_session(predictor, a)).forward
    kind = predictor.schema.kind
    from danlu.cli.inputs import collect_inputs

    inputs = collect_inputs(a, kind)
    if not inputs:
        raise DanluError("no inputs", hint="danlu predict RUN image.png | \"some text\" | rows.csv | - (stdin)")
    if kind == "text":
        for item in a.inputs:
            if item != "-" and len(item) < 4096 and Path(item).is_file():
                print(f"note: '{item}' is predicted as a text; to predict the lines of that file use --file {item}",
                      file=sys.stderr)
    skipped: list[str] = []
    rows = predictor.predict(inputs, top_k=a.top_k, skipped=skipped)
    for problem in skipped:
        print(f"skipped {problem}", file=sys.stderr)
    if a.json:
        print_json({"predictions": rows})
        return
    from danlu.printable import terminal_safe as safe  # class names and inputs come from the user's data

    for row in rows:
        label = safe(row["input"])
        if "top" in row:
            tops = "  ".join(f"{safe(t['label'])} {t['probability']:.3f}" for t in row["top"])
            print(f"{label}\t{tops}")
        else:
            print(f"{label}\t" + "  ".join(f"{k}={v:.4g}" if v is not None else f"{k}=nan"
                                           for k, v in row["prediction"].items()))


def _backend_session(predictor, a: argparse.Namespace):
    from danlu.serve.engine import onnx_session as session

    return session(predictor.run_dir, predictor.schema, a.data_dir, a.backend)


def add_predict_verb(sub: argparse._SubParsersAction, common: Callable[[argparse.ArgumentParser], None]) -> None:
    pr = sub.add_parser("predict", help="predict images, texts or CSV rows with a trained run")
    pr.add_argument("run")
    pr.add_argument("inputs", nargs="*", help="image files/folders, texts, CSV files or rows; - reads stdin")
    pr.add_argument("--file", help="read inputs from a file (one text per line)")
    pr.add_argument("--top-k", type=int, default=3)
    pr.add_argument("--backend", choices=["torch", "onnx", "onnx-int8"], default="torch",
                    help="onnx: model.onnx (exported when stale); onnx-int8: model.int8.onnx (danlu compress)")
    pr.add_argument("--json", action="store_true")
    from danlu.recommend.cli import add_predict_options

    add_predict_options(pr)
    common(pr)
    pr.set_defaults(func=cmd_predict)
