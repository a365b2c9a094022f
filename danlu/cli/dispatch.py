"""``danlu VERB ...``: the dispatcher. Each verb family (train, predict, runs, tune, ...) is a module of its
own that adds its subcommands; this one builds the parser, runs the verb and turns errors into exit codes.

Imports only argparse at start-up so ``danlu --help`` and ``danlu runs`` answer fast; each verb
imports what it needs. User errors exit 2 without a traceback (``--debug`` shows it), bugs exit 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every verb family's subcommands, and the options all verbs share."""
    p = argparse.ArgumentParser(prog="danlu", description="danlu (丹炉): data → trained, evaluated, served model.")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    from danlu import __version__

    p.add_argument("--version", action="version", version=f"danlu {__version__}")
    sub = p.add_subparsers(dest="verb", metavar="VERB")
    for add_verbs in _verb_families():
        add_verbs(sub, _data_options)
    for verb in sub.choices.values():
        _add_output_options(verb)
    return p


def _verb_families() -> list:
    """Each family's ``add_*`` function, in the order ``danlu --help`` lists them."""
    from danlu.cli.catalog import add_catalog_verbs
    from danlu.cli.compress import add_compress_verb
    from danlu.cli.explain import add_explain_verb
    from danlu.cli.federate import add_federate_verb
    from danlu.cli.predict import add_predict_verb
    from danlu.cli.runs import add_runs_verb
    from danlu.cli.serve import add_serving_verbs
    from danlu.cli.studio import add_studio_verbs
    from danlu.cli.train import add_train_verbs
    from danlu.cli.tune import add_tune_verb

    return [add_train_verbs, add_predict_verb, add_runs_verb, add_tune_verb, add_catalog_verbs, add_serving_verbs,
            add_compress_verb, add_federate_verb, add_studio_verbs, add_explain_verb]


def _data_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--runs-dir", type=Path, default=None, help="where runs live (default ./runs)")
    sp.add_argument("--data-dir", type=Path, default=None, help="folder holding datasets by name")


def _add_output_options(verb: argparse.ArgumentParser) -> None:
    """`danlu train ... --debug` as well as `danlu --debug train ...`; -v and --quiet on every verb."""
    verb.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    verb.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    if "--quiet" not in verb._option_string_actions:
        verb.add_argument("--quiet", action="store_true", help="warnings and notes off (errors still shown)")


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
    from danlu.log import configure_cli

    configure_cli(getattr(a, "verbose", 0), getattr(a, "quiet", False))
    if argv is None and getattr(a, "heavy", False):  # train, evaluate: figures drawn beside the work
        from danlu.plots import worker as plot_worker
        from danlu.runtime import allocate_big_blocks_from_heap, keep_freed_memory

        plot_worker.start()  # before torch's import, so matplotlib loads beside it
        keep_freed_memory()
        allocate_big_blocks_from_heap()
    try:
        a.func(a)
        return 0
    except KeyboardInterrupt:
        print("interrupted" + ("; continue with: danlu train --resume RUN (the run folder printed above)"
                               if getattr(a, "resume_hint", False) else ""), file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:
        from danlu.cli.checks import path_error
        from danlu.errors import DISK_FULL_ERRNOS, DanluError, disk_full
        from danlu.printable import terminal_safe

        if isinstance(e, OSError) and e.errno in DISK_FULL_ERRNOS:  # a write outside atomic_file (an append)
            e = disk_full(e.filename, e)
        e = path_error(e) or e  # a path the user gave that the OS refuses: exit 2, not a bug
        if a.debug or os.environ.get("DANLU_DEBUG"):
            import traceback

            traceback.print_exc()
        if isinstance(e, DanluError):
            print(f"error: {terminal_safe(e, keep_newlines=True)}", file=sys.stderr)  # may quote the user's data
            return e.exit_code
        shown = terminal_safe(e, keep_newlines=True)
        print(f"internal error: {type(e).__name__}: {shown}\n  (a bug in danlu; rerun with --debug for the traceback)",
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
