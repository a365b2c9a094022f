"""CLI verbs of the production path (export, serve), kept apart so cli.py stays small.

Handlers import torch, onnx and fastapi lazily: ``danlu --help`` must stay fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable


def cmd_export(a: argparse.Namespace) -> None:
    from danlu.export import export_onnx

    # with --json the progress line goes to stderr so stdout holds one JSON object
    result = export_onnx(a.run, runs_dir=a.runs_dir, data_dir=a.data_dir,
                         say=lambda msg: print(msg, file=sys.stderr if a.json else sys.stdout, flush=True))
    if a.json:
        print(json.dumps(result.as_json(), ensure_ascii=False, allow_nan=False))
    else:
        print(f"wrote {result.onnx_path} and {result.meta_path.name} ({result.export_s:.1f} s)")


def cmd_serve(a: argparse.Namespace) -> None:
    from danlu.errors import DanluError
    from danlu.runs import resolve_run

    if not 0 <= a.port <= 65535:
        raise DanluError(f"--port {a.port} is not a port number", hint="use 1-65535, e.g. --port 8000")
    if a.workers < 1:
        raise DanluError("--workers must be at least 1")
    from danlu.serve.app import check_limits

    check_limits(a.max_batch_size, a.max_wait_ms, a.max_body_mb, a.max_inputs)
    run = resolve_run(a.run, a.runs_dir)
    _check_port_free(a.host, a.port)
    api_key = a.api_key if a.api_key is not None else os.environ.get("DANLU_API_KEY") or None
    if a.backend == "onnx":  # export once here, not once per worker
        from danlu.export import export_onnx, onnx_is_current

        if not onnx_is_current(run):
            print(f"exporting {run.name} to ONNX first", file=sys.stderr, flush=True)
            export_onnx(run, data_dir=a.data_dir, say=lambda msg: print(msg, file=sys.stderr, flush=True))
    settings = {"run": str(run), "backend": a.backend, "max_batch_size": a.max_batch_size,
                "max_wait_ms": a.max_wait_ms, "max_body_mb": a.max_body_mb, "max_inputs": a.max_inputs,
                "api_key": api_key, "data_dir": str(a.data_dir) if a.data_dir else None}
    from danlu.serve.server import run_server

    def announce() -> None:
        print(f"serving {run.name} ({a.backend}) on http://{a.host}:{a.port}  ·  page /  ·  API docs /docs"
              + ("  ·  API key required" if api_key else ""), file=sys.stderr, flush=True)

    run_server(settings, a.host, a.port, a.workers, log_level=a.log_level, announce=announce)


def _check_port_free(host: str, port: int) -> None:
    """Say so before the model loads when the address is taken (uvicorn would exit with code 3 after)."""
    import errno
    import socket

    from danlu.errors import DanluError

    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise DanluError(f"--host {host}: unknown address ({e.strerror})", hint="e.g. 127.0.0.1 or 0.0.0.0") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as e:
            raise DanluError(f"cannot listen on {host}:{port}: {e.strerror or e}",
                             hint=f"another program uses the port: pick another (--port {port + 1}) or stop it"
                             if e.errno == errno.EADDRINUSE else "pick another --host/--port") from None


def add_serving_verbs(sub: argparse._SubParsersAction, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """Register ``export`` and ``serve``."""
    ex = sub.add_parser("export", help="export a run's model to ONNX, checked against PyTorch on the test split")
    ex.add_argument("run")
    ex.add_argument("--format", choices=["onnx"], default="onnx", help="only onnx for now")
    ex.add_argument("--json", action="store_true", help="print one JSON object (paths, parity) last")
    common(ex)
    ex.set_defaults(func=cmd_export)

    sv = sub.add_parser("serve", help="serve a run over HTTP: JSON API, web page, metrics")
    sv.add_argument("run")
    sv.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--backend", choices=["torch", "onnx"], default="torch",
                    help="onnx exports model.onnx first when it is missing or stale")
    sv.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (each loads the model)")
    sv.add_argument("--max-batch-size", type=int, default=64,
                    help="most inputs merged into one forward pass; 1 turns micro-batching off")
    sv.add_argument("--max-wait-ms", type=float, default=5.0,
                    help="longest a request waits for others to share its forward pass")
    sv.add_argument("--max-body-mb", type=float, default=10.0, help="request body limit in MiB (413 above)")
    sv.add_argument("--max-inputs", type=int, default=64, help="most inputs in one request (422 above)")
    sv.add_argument("--api-key", default=None,
                    help="require this key on /v1 routes (X-API-Key or Authorization: Bearer); "
                         "default: env DANLU_API_KEY")
    sv.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    common(sv)
    sv.set_defaults(func=cmd_serve)
