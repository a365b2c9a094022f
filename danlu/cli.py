"""``danlu VERB ...``: one thin function per verb — parse, call the API, print.

Imports only argparse at start-up so ``danlu --help`` and ``danlu runs`` answer fast; each verb
imports what it needs. User errors exit 2 without a traceback (``--debug`` shows it), bugs exit 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _print_json(obj: object) -> None:
    print(json.dumps(obj, ensure_ascii=False, allow_nan=False))


def cmd_train(a: argparse.Namespace) -> None:
    from danlu.api import train

    if a.recipe is None and a.resume is None:
        from danlu.errors import DanluError

        raise DanluError("train needs a RECIPE (or --resume RUN)", hint="danlu recipes lists the built-in ones")
    overrides = list(a.overrides)
    recipe = a.recipe
    if a.resume is not None and recipe is not None:
        if "=" not in recipe:
            from danlu.errors import DanluError

            raise DanluError(f"--resume continues the run with its own recipe; '{recipe}' is not used",
                             hint=f"danlu train --resume {a.resume}")
        overrides.insert(0, recipe)
    result = train(recipe or "digits-mlp", overrides, runs_dir=a.runs_dir, data_dir=a.data_dir, resume=a.resume,
                   progress=not a.quiet)
    if a.json:
        _print_json(result.as_json())
    else:
        print((result.run / "report.md").read_text(encoding="utf-8"))
        print(f"run folder: {result.run}  ({result.wall_s:.1f} s)")


def cmd_evaluate(a: argparse.Namespace) -> None:
    from danlu.api import evaluate
    from danlu.evaluation import report_name

    report = evaluate(a.run, a.split, runs_dir=a.runs_dir, data_dir=a.data_dir)
    if a.json:
        _print_json({"run": report["run"], "split": a.split, "metrics": report["metrics"]})
    else:
        print((Path(report["run"]) / f"{report_name(a.split)}.md").read_text(encoding="utf-8"))


def _read_lines(raw: bytes, source: Path) -> list[str]:
    """Non-blank lines of UTF-8 text; other encodings get the same error (and iconv hint) as training."""
    from danlu.text.files import decode_text

    return [line.rstrip("\r") for line in decode_text(raw, source).split("\n") if line.strip()]


def cmd_predict(a: argparse.Namespace) -> None:
    from danlu.errors import DanluError
    from danlu.predictor import Predictor, expand_image_inputs, finite

    if a.top_k < 1:
        raise DanluError(f"--top-k must be at least 1, got {a.top_k}")
    predictor = Predictor.load(a.run, a.runs_dir)
    kind = predictor.schema.kind
    inputs: list = []
    for item in a.inputs:
        if item == "-":
            stream = getattr(sys.stdin, "buffer", None)  # bytes, decoded as files are (not the locale's way)
            raw = stream.read() if stream is not None else sys.stdin.read().encode()
            inputs.extend(_read_lines(raw, Path("<stdin>")))
        else:
            inputs.append(item)
    if a.file:
        from danlu.text.files import read_bytes  # gzipped files too, as training reads them

        inputs.extend(_read_lines(read_bytes(Path(a.file)), Path(a.file)) if kind == "text" else [a.file])
    if not inputs:
        raise DanluError("no inputs", hint="danlu predict RUN image.png | \"some text\" | rows.csv | - (stdin)")
    labels = None
    if kind == "text":
        for item in a.inputs:
            if item != "-" and len(item) < 4096 and Path(item).is_file():
                print(f"note: '{item}' is predicted as a text; to predict the lines of that file use --file {item}",
                      file=sys.stderr)
    if kind == "image":
        rows = _predict_images(predictor, expand_image_inputs(inputs), a.top_k)
    else:
        if kind == "tabular":
            inputs, labels = _tabular_inputs(inputs, predictor)
        labels = labels if labels is not None else [str(x) for x in inputs]
        rows = []
        for start in range(0, len(inputs), 512):  # a 20,000-line --file once took 3-5 GB in one batch
            rows += finite(predictor.predict(inputs[start:start + 512], top_k=a.top_k,
                                             labels=labels[start:start + 512]))
    if a.json:
        _print_json({"predictions": rows})
        return
    for row in rows:
        label = str(row["input"])
        if "top" in row:
            tops = "  ".join(f"{t['label']} {t['probability']:.3f}" for t in row["top"])
            print(f"{label}\t{tops}")
        else:
            print(f"{label}\t" + "  ".join(f"{k}={v:.4g}" if v is not None else f"{k}=nan"
                                           for k, v in row["prediction"].items()))


def _predict_images(predictor, paths: list[str], top_k: int, chunk: int = 256) -> list[dict]:
    """Predict image files a chunk at a time (a big folder never sits in memory as floats); files that
    cannot be read are reported on stderr and left out, as training leaves them out."""
    from danlu.errors import DataError
    from danlu.predictor import finite

    rows: list[dict] = []
    problems: list[str] = []
    for start in range(0, len(paths), chunk):
        kept, pixels, bad = predictor.readable_images(paths[start:start + chunk])
        problems += bad
        if kept:
            outputs = predictor.forward(predictor.normalize(pixels))
            rows += finite(predictor.format(outputs, kept, top_k))
    for problem in problems:
        print(f"skipped {problem}", file=sys.stderr)
    if not rows:
        raise DataError(f"none of the {len(paths)} image(s) could be read",
                        hint="give JPEG, PNG, GIF, BMP or WebP files")
    return rows


def _tabular_inputs(items: list[str], predictor) -> tuple[list, list]:
    """CSV files (with a header naming the feature columns) or comma-separated rows typed inline."""
    from danlu.data.tabular import read_csv
    from danlu.errors import DataError

    rows, labels = [], []
    for item in items:
        p = Path(item)
        if p.suffix.lower() in (".csv", ".tsv", ".txt") and not p.is_file():
            raise DataError(f"{item}: no such file", hint=f"paths are relative to {Path.cwd()}; "
                                                          "or type a row inline: danlu predict RUN 1.5,2,red")
        if p.suffix.lower() in (".csv", ".tsv", ".txt"):
            header, body = read_csv(p)
            for i, r in enumerate(body):
                rows.append(dict(zip(header, r, strict=True)))
                labels.append(f"{p.name}:{i + 1}")
        else:
            rows.append([v.strip() for v in item.split(",")])
            labels.append(item)
    return rows, labels


def cmd_runs(a: argparse.Namespace) -> None:
    from danlu.runs import list_runs, read_json, read_run_recipe, resolve_run, run_summary

    if a.action == "show":
        from danlu.errors import DanluError

        if not a.run:
            raise DanluError("runs show needs a RUN", hint="danlu runs lists them")
        run = resolve_run(a.run, a.runs_dir)
        if a.json:
            shown = {"run": str(run), "recipe": read_run_recipe(run)}
            if (run / "status.json").exists():
                shown["status"] = read_json(run / "status.json")
            if (run / "report.json").exists():
                shown["metrics"] = read_json(run / "report.json").get("metrics", {})
            _print_json(shown)
            return
        print(f"run: {run}")
        print((run / "recipe.yaml").read_text(encoding="utf-8"))
        for name in ("status.json", "report.json"):
            if (run / name).exists():
                data = read_json(run / name)
                data = data.get("metrics", data) if name == "report.json" else data
                print(f"{name}: {json.dumps(data, ensure_ascii=False)}")
        return
    runs = list_runs(a.runs_dir)
    if a.json:
        _print_json([run_summary(r) for r in runs])
        return
    if not runs:
        print(f"no runs in {a.runs_dir or 'runs'}/ — try: danlu train digits-mlp")
        return
    for r in runs:
        s = run_summary(r)
        m = s.get("metrics", {})
        key = {k: m[k] for k in ("accuracy", "f1_macro", "r2", "mae") if k in m}
        print(f"{s['run']:<48} {s.get('status', '?'):<10} " + "  ".join(f"{k} {v:.4f}" for k, v in key.items()))


def cmd_models(a: argparse.Namespace) -> None:
    from danlu.models.specs import MODELS, option_help

    for name, (_, kinds, desc) in MODELS.items():
        print(f"{name:<20} [{'/'.join(kinds)}] {desc}")
        print(f"{'':<20} {_parameter_count(name)}")
        print(f"{'':<20} options: {option_help(name)}")


def _parameter_count(name: str) -> str:
    """Parameters of the model built with its default options on an example input (counted, not quoted)."""
    from danlu.errors import DanluError
    from danlu.models import build, count_parameters
    from danlu.schema import Schema

    examples = {
        "mlp": (Schema("image", "classification", [1, 28, 28], classes=[str(i) for i in range(10)]), "MNIST"),
        "cnn": (Schema("image", "classification", [1, 28, 28], classes=[str(i) for i in range(10)]), "MNIST"),
        "simple_cnn": (Schema("image", "classification", [3, 32, 32], classes=[str(i) for i in range(10)]),
                       "CIFAR-10"),
    }
    text = Schema("text", "classification", [128], classes=["neg", "pos"], text={"vocab_size": 5000, "pad_id": 0})
    image = Schema("image", "classification", [3, 224, 224], classes=["a", "b"])
    schema, where = examples.get(name, (text, "5,000-token vocab, 2 classes") if name in (
        "lstm", "article_lstm", "textcnn", "transformer") else (image, "224 px, 2 classes"))
    options = {"weights": None} if name.startswith(("resnet", "efficientnet")) else {}
    try:
        total, trainable = count_parameters(build(name, options, schema))
    except (DanluError, ImportError, OSError) as e:
        return f"parameters: unavailable here ({str(e).splitlines()[0][:80]})"
    return f"{total:,} parameters on {where}"


def cmd_recipes(a: argparse.Namespace) -> None:
    from danlu.recipe import builtin_recipes, load_recipe

    if a.name:
        print(load_recipe(a.name, a.overrides).to_yaml())
        return
    for name, what in builtin_recipes().items():
        print(f"{name:<28} {what}")


def cmd_data(a: argparse.Namespace) -> None:
    from danlu.describe import describe

    print(describe(a.recipe, a.overrides, data_dir=a.data_dir))


def cmd_scratch(a: argparse.Namespace) -> None:
    from danlu.scratch.worked_example import as_json, render, worked_example

    sections = worked_example()
    if a.json:
        _print_json(as_json(sections))
    else:
        print(render(sections))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="danlu", description="danlu (丹炉): data → trained, evaluated, served model.")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    from danlu import __version__

    p.add_argument("--version", action="version", version=f"danlu {__version__}")
    sub = p.add_subparsers(dest="verb", metavar="VERB")

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--runs-dir", type=Path, default=None, help="where runs live (default ./runs)")
        sp.add_argument("--data-dir", type=Path, default=None, help="folder holding datasets by name")

    t = sub.add_parser("train", help="train a recipe: danlu train RECIPE [key=value ...]")
    t.add_argument("recipe", nargs="?", help="built-in recipe name or YAML file (danlu recipes)")
    t.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.epochs=3 model.hidden=[256,128]")
    t.add_argument("--resume", metavar="RUN", help="continue a run that was interrupted")
    t.add_argument("--json", action="store_true", help="print one JSON object (run, metrics, wall_s) last")
    t.add_argument("--quiet", action="store_true", help="no progress output")
    common(t)
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="evaluate a run on a split → report.json, report.md, plots")
    e.add_argument("run")
    e.add_argument("--split", default="test", help="train, val or test")
    e.add_argument("--json", action="store_true")
    common(e)
    e.set_defaults(func=cmd_evaluate)

    pr = sub.add_parser("predict", help="predict images, texts or CSV rows with a trained run")
    pr.add_argument("run")
    pr.add_argument("inputs", nargs="*", help="image files/folders, texts, CSV files or rows; - reads stdin")
    pr.add_argument("--file", help="read inputs from a file (one text per line)")
    pr.add_argument("--top-k", type=int, default=3)
    pr.add_argument("--json", action="store_true")
    common(pr)
    pr.set_defaults(func=cmd_predict)

    r = sub.add_parser("runs", help="list runs, or: danlu runs show RUN")
    r.add_argument("action", nargs="?", choices=["list", "show"], default="list")
    r.add_argument("run", nargs="?")
    r.add_argument("--json", action="store_true")
    common(r)
    r.set_defaults(func=cmd_runs)

    m = sub.add_parser("models", help="list models with their options and sizes")
    m.set_defaults(func=cmd_models)

    rc = sub.add_parser("recipes", help="list built-in recipes, or print one resolved: danlu recipes NAME")
    rc.add_argument("name", nargs="?")
    rc.add_argument("overrides", nargs="*")
    rc.set_defaults(func=cmd_recipes)

    d = sub.add_parser("data", help="inspect data: danlu data describe RECIPE [key=value ...]")
    d.add_argument("action", choices=["describe"])
    d.add_argument("recipe")
    d.add_argument("overrides", nargs="*")
    common(d)
    d.set_defaults(func=cmd_data)

    sc = sub.add_parser("scratch", help="the articles' math redone in numpy: danlu scratch worked-example")
    sc.add_argument("action", choices=["worked-example"])
    sc.add_argument("--json", action="store_true", help="the numbers as one JSON object")
    sc.set_defaults(func=cmd_scratch)

    from danlu.cli_serve import add_serving_verbs

    add_serving_verbs(sub, common)
    for verb in sub.choices.values():  # `danlu train ... --debug` as well as `danlu --debug train ...`
        verb.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    return p


def parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Like parse_args, but key=value overrides and predict's inputs may also follow options
    (``train R --quiet a.b=1``, ``predict RUN --json x.png``)."""
    a, extra = parser.parse_known_args(argv)
    if extra and hasattr(a, "overrides") and all("=" in x and not x.startswith("-") for x in extra):
        a.overrides = [*a.overrides, *extra]
    elif extra and hasattr(a, "inputs") and not any(x.startswith("-") and x != "-" for x in extra):
        a.inputs = [*a.inputs, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(x for x in extra if '=' not in x or x.startswith('-'))}")
    return a


def main(argv: list[str] | None = None) -> int:
    """The ``danlu`` command; ``argv=None`` means a real process, which may fork plot helpers."""
    parser = build_parser()
    a = parse(parser, argv)
    if not getattr(a, "func", None):
        parser.print_help()
        return 0
    if argv is None and a.func in (cmd_train, cmd_evaluate):
        from danlu import plot_worker
        from danlu.runtime import keep_freed_memory

        plot_worker.start()  # before torch's import, so matplotlib loads beside it
        keep_freed_memory()
    try:
        a.func(a)
        return 0
    except KeyboardInterrupt:
        print("interrupted" + ("; continue with: danlu train --resume RUN (the run folder printed above)"
                               if a.func is cmd_train else ""), file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:
        from danlu.errors import DanluError

        if a.debug or os.environ.get("DANLU_DEBUG"):
            import traceback

            traceback.print_exc()
        if isinstance(e, DanluError):
            print(f"error: {e}", file=sys.stderr)
            return e.exit_code
        print(f"internal error: {type(e).__name__}: {e}\n  (a bug in danlu; rerun with --debug for the traceback)",
              file=sys.stderr)
        return 1


def run() -> None:
    """Console entry point: ``main()``, then exit without tearing the interpreter down.

    Python's shutdown frees every module and tensor one by one: ~0.5 s after an MNIST run here, spent
    on nothing, since every file is already written and closed. Output streams are flushed first.
    """
    code = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError, OSError):
            pass
    os._exit(code)


if __name__ == "__main__":
    run()
