"""CLI verbs of the production path (export, serve), kept apart so cli.py stays small.

Handlers import torch, onnx and fastapi lazily: ``danlu --help`` must stay fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from danlu.cli.output import print_json


def cmd_export(a: argparse.Namespace) -> None:
    from danlu.errors import DanluError
    from danlu.export import export_onnx
    from danlu.recommend import is_recommendation_run
    from danlu.runs.store import resolve_run

    try:
        found = resolve_run(a.run, a.runs_dir)
    except DanluError:  # export_onnx says what is wrong with it
        found = None
    if found is not None and is_recommendation_run(found):  # embeddings + scoring graph (danlu/recommend/)
        from danlu.recommend.export import export_recommender

        done = export_recommender(found,
                                  say=lambda msg: print(msg, file=sys.stderr if a.json else sys.stdout, flush=True))
        print_json(done) if a.json else print(f"wrote {done['onnx']} and {done['embeddings']} ({done['export_s']} s)")
        return

    # with --json the progress line goes to stderr so stdout holds one JSON object
    result = export_onnx(a.run, runs_dir=a.runs_dir, data_dir=a.data_dir,
                         say=lambda msg: print(msg, file=sys.stderr if a.json else sys.stdout, flush=True))
    if a.json:
        print_json(result.as_json())
    else:
        print(f"wrote {result.onnx_path} and {result.meta_path.name} ({result.export_s:.1f} s)")


def cmd_serve(a: argparse.Namespace) -> None:
    from danlu.errors import DanluError
    from danlu.runs.store import resolve_run

    if not 0 <= a.port <= 65535:
        raise DanluError(f"--port {a.port} is not a port number", hint="use 1-65535, e.g. --port 8000")
    if a.workers < 1:
        raise DanluError("--workers must be at least 1")
    from danlu.serve.app import check_limits
    from danlu.serve.limits import ConnectionLimits, DecodeLimits, check_body_timeout

    check_limits(a.max_batch_size, a.max_wait_ms, a.max_body_mb, a.max_inputs)
    check_body_timeout(a.body_timeout)
    DecodeLimits(a.max_image_mb, a.max_request_image_mb, a.decode_threads).check()
    connection_limits = ConnectionLimits(a.header_timeout, a.max_header_kb, a.max_connections)
    connection_limits.check()
    allowed_hosts = [h.strip() for entry in a.allowed_hosts or [] for h in entry.split(",") if h.strip()]
    api_key = _api_key(a)
    run = resolve_run(a.run, a.runs_dir)
    _check_port_free(a.host, a.port)
    if a.backend == "onnx":  # export once here, not once per worker
        from danlu.export import export_onnx, onnx_is_current

        if not onnx_is_current(run):
            print(f"exporting {run.name} to ONNX first", file=sys.stderr, flush=True)
            export_onnx(run, data_dir=a.data_dir, say=lambda msg: print(msg, file=sys.stderr, flush=True))
    settings = {"run": str(run), "backend": a.backend, "max_batch_size": a.max_batch_size,
                "max_wait_ms": a.max_wait_ms, "max_body_mb": a.max_body_mb, "max_inputs": a.max_inputs,
                "api_key": api_key, "data_dir": str(a.data_dir) if a.data_dir else None,
                "body_timeout_s": a.body_timeout, "max_image_mb": a.max_image_mb,
                "max_request_image_mb": a.max_request_image_mb, "decode_threads": a.decode_threads,
                "allowed_hosts": allowed_hosts}
    from danlu.serve.server import run_server

    def announce() -> None:
        print(f"serving {run.name} ({a.backend}) on http://{a.host}:{a.port}  ·  page /  ·  API docs /docs"
              + ("  ·  API key required" if api_key else ""), file=sys.stderr, flush=True)

    run_server(settings, a.host, a.port, a.workers, log_level=a.log_level, announce=announce, limits=connection_limits)


def _api_key(a: argparse.Namespace) -> str | None:
    """--api-key-file (first line), else --api-key, else DANLU_API_KEY; an empty key means none."""
    from danlu.errors import DanluError

    if a.api_key_file is not None:
        if a.api_key is not None:
            raise DanluError("give --api-key or --api-key-file, not both")
        from danlu.errors import RunError
        from danlu.runs.files import LIMITS, read_text

        try:  # a regular file of at most 64 KiB: not a FIFO that hangs, nor /dev/zero that fills memory
            lines = read_text(a.api_key_file, limit=LIMITS["key"]).splitlines()
        except RunError as e:
            raise DanluError(f"--api-key-file {e.message.replace(' is damaged:', ':')}",
                             hint="a text file holding the key on its first line") from None
        except (OSError, UnicodeDecodeError) as e:
            raise DanluError(f"--api-key-file {a.api_key_file}: cannot read it ({getattr(e, 'strerror', None) or e})",
                             hint="a text file holding the key on its first line") from None
        key = lines[0].strip() if lines else ""
        if not key:
            raise DanluError(f"--api-key-file {a.api_key_file} is empty", hint="write the key on its first line")
        return key
    return a.api_key if a.api_key is not None else os.environ.get("DANLU_API_KEY") or None


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
    from danlu.serve.limits import BODY_TIMEOUT_S, ConnectionLimits, DecodeLimits  # light: no fastapi, no torch
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
    sv.add_argument("--backend", choices=["torch", "onnx", "onnx-int8"], default="torch",
                    help="onnx exports model.onnx first when it is missing or stale; onnx-int8 serves "
                         "model.int8.onnx (danlu compress RUN --quantize int8)")
    sv.add_argument("--workers", type=int, default=1,
                    help="uvicorn worker processes (each loads the model; /metrics sums them all)")
    sv.add_argument("--max-batch-size", type=int, default=64,
                    help="most inputs merged into one forward pass; 1 turns micro-batching off")
    sv.add_argument("--max-wait-ms", type=float, default=5.0,
                    help="longest a request waits for others to share its forward pass")
    sv.add_argument("--max-body-mb", type=float, default=10.0, help="request body limit in MiB (413 above)")
    sv.add_argument("--max-inputs", type=int, default=64, help="most inputs in one request (422 above)")
    lim = sv.add_argument_group("limits", "what a small or slow request may cost the server "
                                          "(docs/limits-and-safety.md, section Serving)")
    decode = DecodeLimits()
    lim.add_argument("--max-image-mb", type=float, default=decode.max_image_mb,
                     help="most memory decoding one image may take, estimated from its header before decoding "
                          "(pixels x bytes per pixel of its mode; 422 above; default %(default)g)")
    lim.add_argument("--max-request-image-mb", type=float, default=decode.max_request_image_mb,
                     help="the same for all images of one request (413 above; default %(default)g)")
    lim.add_argument("--decode-threads", type=int, default=0,
                     help="images decoded at once per worker, off the event loop (default 0: min(4, cores))")
    lim.add_argument("--body-timeout", type=float, default=BODY_TIMEOUT_S,
                     help="seconds the whole request body may take to arrive (408 after; default %(default)g)")
    conn = ConnectionLimits()
    lim.add_argument("--header-timeout", type=float, default=conn.header_timeout_s,
                     help="seconds from connecting (or from the last answer) to the end of the request headers "
                          "(408 or closed after; default %(default)g)")
    lim.add_argument("--max-header-kb", type=float, default=conn.max_header_kb,
                     help="request line and headers limit in KiB (431 above; default %(default)g)")
    lim.add_argument("--max-connections", type=int, default=conn.max_connections,
                     help="open connections per worker; more are answered 503 and closed (default %(default)d)")
    lim.add_argument("--allowed-hosts", action="append", metavar="HOST[,HOST]",
                     help="Host header values to answer besides localhost names and the bound address (421 "
                          "otherwise: DNS rebinding); '.example.com' for a domain and its subdomains, '*' for any")
    key = sv.add_argument_group("API key", "required on /v1 routes as X-API-Key: KEY or Authorization: Bearer KEY. "
                                           "Prefer DANLU_API_KEY or --api-key-file: --api-key shows in `ps`")
    key.add_argument("--api-key-file", default=None, metavar="PATH", help="read the key from this file's first line")
    key.add_argument("--api-key", default=None, help="the key itself (visible to other users in `ps`; default: "
                                                     "env DANLU_API_KEY)")
    sv.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    common(sv)
    sv.set_defaults(func=cmd_serve)
