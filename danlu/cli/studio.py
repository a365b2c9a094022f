"""CLI verbs that look at many runs: ``danlu studio`` (the web app) and ``danlu runs compare``.

Kept apart from cli.py (which registers them with one line each); fastapi and matplotlib load lazily.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from danlu.cli.output import print_json


def cmd_studio(a: argparse.Namespace) -> None:
    from danlu.cli.serve import _api_key, _check_port_free
    from danlu.errors import DanluError

    if not 0 <= a.port <= 65535:
        raise DanluError(f"--port {a.port} is not a port number", hint="use 1-65535, e.g. --port 8100")
    runs = Path(a.runs or a.runs_dir or "runs")
    if not runs.is_dir():
        raise DanluError(f"no runs folder {runs}", hint="train a run first (danlu train digits-mlp) or give --runs DIR")
    api_key = _api_key(a)
    allowed = [h.strip() for entry in a.allowed_hosts or [] for h in entry.split(",") if h.strip()]
    _check_port_free(a.host, a.port)
    import uvicorn

    from danlu.studio.app import create_studio_app

    if a.host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        print(f"warning: the studio on {a.host} without an API key shows every run to anyone who can reach it "
              "(set DANLU_API_KEY or --api-key-file)", file=sys.stderr)
    app = create_studio_app(runs, api_key, bind_host=a.host, allowed_hosts=allowed)
    print(f"studio of {runs.resolve()} on http://{a.host}:{a.port}  ·  API docs /docs"
          + ("  ·  API key required" if api_key else ""), file=sys.stderr, flush=True)
    from danlu.serve.limits import ConnectionLimits
    from danlu.serve.server import uvicorn_config

    # serve's protocol: header timeout, header size and connection cap on the raw connection
    uvicorn.Server(uvicorn_config(app, a.host, a.port, a.log_level, ConnectionLimits())).run()


def cmd_compare(a: argparse.Namespace) -> None:
    """``danlu runs compare A B [C ...]``: deltas and recipe diff printed, overlaid curves as PNG."""
    from danlu.runs.compare import compare, overlay_curves, render
    from danlu.runs.store import resolve_run

    runs = [resolve_run(r, a.runs_dir) for r in a.run]
    result = compare(runs)
    from danlu.cli.checks import output_file

    png = output_file(a.png, "--png") if a.png else Path(a.runs_dir or "runs") / "compare.png"
    overlay_curves(runs, png)
    result["curves_png"] = str(png.resolve())
    if a.json:
        print_json(result)
        return
    print(render(result))
    print(f"\nlearning curves: {png}")


def add_studio_verbs(sub: argparse._SubParsersAction, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """Register ``studio``."""
    st = sub.add_parser("studio", help="a local web app over a runs folder: list, open, compare, try runs")
    st.add_argument("--runs", default=None, metavar="DIR", help="the runs folder (default --runs-dir, else ./runs)")
    st.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    st.add_argument("--port", type=int, default=8100)
    st.add_argument("--allowed-hosts", action="append", metavar="HOST[,HOST]",
                    help="Host header values to answer besides localhost names and the bound address")
    st.add_argument("--api-key-file", default=None, metavar="PATH", help="read an API key from this file's first line")
    st.add_argument("--api-key", default=None, help="the key itself (visible in `ps`; default: env DANLU_API_KEY)")
    st.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"])
    common(st)
    st.set_defaults(func=cmd_studio)


def add_compare_options(r: argparse.ArgumentParser) -> None:
    """``runs compare``'s own options, on the ``runs`` verb."""
    r.add_argument("--png", default=None, metavar="PATH",
                   help="runs compare: where the overlaid learning curves go (default RUNS_DIR/compare.png)")
