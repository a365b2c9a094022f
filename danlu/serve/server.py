"""Run the app under uvicorn: one process, or ``workers`` processes sharing the port.

Several workers need an importable factory, so the settings travel to them in an environment variable,
and they share their metrics through a temporary folder. Each worker gets cores / workers torch threads
so the processes do not fight over the CPU. The connection limits ride on uvicorn's config to
``danlu.serve.protocol``, which enforces them.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from danlu.serve.limits import ConnectionLimits

CONFIG_ENV = "DANLU_SERVE_CONFIG"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
# On SIGINT/SIGTERM in-flight requests get this long to finish (they take milliseconds; a client stalled
# mid-body is answered 408 after 30 s), so one stuck client cannot hold a restart forever.
GRACE_S = 60


def run_server(settings: dict[str, Any], host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
               log_level: str = "info", announce: Any = None, limits: ConnectionLimits | None = None) -> None:
    """Serve until SIGINT/SIGTERM; uvicorn then lets in-flight requests finish before the app drains its queue.

    The model is loaded before ``announce()`` says where it is served: a damaged run fails here, once,
    with its own message (several workers would each fail and be restarted by uvicorn, endlessly).
    """
    import uvicorn

    if host not in LOOPBACK and not settings.get("api_key"):
        print(f"warning: serving on {host} without an API key; anyone who can reach it can use the model "
              "(set DANLU_API_KEY or --api-key-file)", file=sys.stderr)
    settings = {**settings, "bind_host": host}
    if workers <= 1:
        app = build_app(settings, workers)
        if announce:
            announce()
        server = uvicorn.Server(uvicorn_config(app, host, port, log_level, limits))
        server.run()
        if not server.started:
            sys.exit(3)  # as uvicorn.run does: the port could not be bound
        return
    from uvicorn.supervisors import Multiprocess

    from danlu.serve.engine import Engine

    data_dir = settings.get("data_dir")
    Engine.load(settings["run"], settings["backend"], data_dir=Path(data_dir) if data_dir else None)  # fail here
    if announce:
        announce()
    metrics_dir = tempfile.mkdtemp(prefix="danlu-metrics-")
    try:
        os.environ[CONFIG_ENV] = json.dumps({**settings, "workers": workers, "metrics_dir": metrics_dir})
        config = uvicorn_config("danlu.serve.server:app_from_env", host, port, log_level, limits,
                                factory=True, workers=workers)
        Multiprocess(config, sockets=[config.bind_socket()]).run()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def uvicorn_config(app: Any, host: str, port: int, log_level: str = "info", limits: ConnectionLimits | None = None,
                   **extra: Any) -> Any:
    """uvicorn's config with danlu's protocol and its connection limits."""
    import uvicorn

    from danlu.serve.protocol import PROTOCOL

    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=GRACE_S,
                            http=PROTOCOL, **extra)
    config.danlu_limits = limits or ConnectionLimits()
    return config


def app_from_env() -> Any:
    """The factory each worker process calls."""
    settings = json.loads(os.environ[CONFIG_ENV])
    return build_app(settings, settings.pop("workers", 1))


def build_app(settings: dict[str, Any], workers: int) -> Any:
    """The app for one serving process, with that process tuned for it (threads, allocator, collector)."""
    from danlu.runtime import keep_freed_memory, share_one_heap
    from danlu.serve.app import create_app, settle_process

    set_threads(workers)
    keep_freed_memory()
    share_one_heap()  # so memory freed after a big decode goes back to the kernel (danlu/runtime.py)
    app = create_app(**settings)
    settle_process()
    return app


def set_threads(workers: int) -> None:
    """Model threads per worker: its share of the cores, less one for the event loop and preprocessing.

    On 2 cores under load, 2 intra-op threads made a batch-1 mnist-cnn forward ~40x slower than 1 thread
    (the threads wait on each other whenever one is descheduled).
    """
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    torch.set_num_threads(max(1, cores // workers - 1))


class BackgroundServer:
    """A uvicorn server on its own thread (tests, notebooks); ``stop()`` shuts it down gracefully."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, limits: ConnectionLimits | None = None):
        import threading

        import uvicorn

        self.server = uvicorn.Server(uvicorn_config(app, host, port, "warning", limits))
        self.thread = threading.Thread(target=self.server.run, name="danlu-serve", daemon=True)
        self.host = host
        self.port = port

    def start(self, timeout: float = 30.0) -> BackgroundServer:
        import time

        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]  # port=0 picks a free one
        return self

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self, timeout: float = 30.0) -> None:
        """Like SIGTERM: stop accepting, let in-flight requests finish, drain the batch queue, return."""
        self.server.should_exit = True
        self.thread.join(timeout)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
