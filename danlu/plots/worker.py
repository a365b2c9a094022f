"""Helper processes that import matplotlib and draw a run's figures while the main process works.

matplotlib costs ~0.7 s to import and ~1.1 s to draw the three figures of an image run here: more than
a fifth of mnist-mlp's whole wall time when done in line after training. The CLI forks two helpers
before it imports torch, so matplotlib loads on the second core during torch's single-threaded import,
and the figures draw in parallel with each other and with the test evaluation. Figures are plain data
(lists, small uint8 arrays, paths) sent over pipes. Whatever a helper fails to draw, or any figure when
no helper runs (no fork on this platform, DANLU_PLOT_WORKER=0, the Python API), is drawn in line, so a
run never misses a plot.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

_pool: _Pool | None = None


class _Pool:
    def __init__(self, pid: int, conns: list[Any]):
        self.pid, self.conns = pid, conns
        self.pending: list[tuple[Any, str, tuple]] = []
        self.next = 0

    def submit(self, name: str, args: tuple) -> bool:
        for _ in range(len(self.conns)):
            conn = self.conns[self.next % len(self.conns)]
            self.next += 1
            try:
                conn.send((name, args))
                self.pending.append((conn, name, args))
                return True
            except (OSError, ValueError):
                continue
        return False

    def wait(self) -> list[tuple[str, tuple]]:
        """Block until every submitted figure is drawn; returns the ones a helper could not draw."""
        failed = []
        for conn, name, args in self.pending:
            try:
                ok = conn.recv()
            except (EOFError, OSError):
                ok = False
            if ok is not True:
                failed.append((name, args))
        self.pending.clear()
        return failed

    def close(self) -> None:
        for conn in self.conns:
            conn.close()
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass


def start(helpers: int = 2) -> None:
    """Fork the drawing helpers; call before heavy imports. A no-op where fork is missing or disabled."""
    global _pool
    if _pool is not None or not hasattr(os, "fork") or os.environ.get("DANLU_PLOT_WORKER", "1") == "0":
        return
    from multiprocessing.connection import Pipe

    pipes = [Pipe() for _ in range(helpers)]
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the helper
        _helper_main([child for _, child in pipes], [parent for parent, _ in pipes])
    for _, child in pipes:
        child.close()
    _pool = _Pool(pid, [parent for parent, _ in pipes])


def _helper_main(mine: list[Any], theirs: list[Any]) -> None:  # pragma: no cover - runs in the helper
    """First helper: import matplotlib once, then fork the others from the warm process and serve."""
    code = 0
    try:
        for conn in theirs:
            conn.close()
        null = os.open(os.devnull, os.O_RDWR)  # hold no pipe of the parent's open (| head, capture_output)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        import signal

        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
        from danlu.plots import figures as plots

        plots.pyplot()
        conn = mine[0]
        for k in range(1, len(mine)):
            if os.fork() == 0:
                conn = mine[k]
                break
        for other in mine:
            if other is not conn:
                other.close()
        while True:
            try:
                name, args = conn.recv()
            except (EOFError, OSError):
                break
            try:
                getattr(plots, name)(*args)
                conn.send(True)
            except Exception as e:  # the parent draws it again in line and shows the error there
                conn.send(f"{type(e).__name__}: {e}")
    except BaseException:
        code = 1
    finally:
        os._exit(code)


_problems: dict[str, str] = {}  # figure file name → why it could not be drawn, until finish() hands them over


def _draw_now(name: str, args: tuple) -> None:
    from danlu.plots import figures as plots

    try:
        getattr(plots, name)(*args)
    except Exception as e:  # a figure is not worth losing the report over (args[-1] is the file)
        _problems[Path(args[-1]).name] = f"{type(e).__name__}: {e}"


def draw(name: str, *args: Any) -> None:
    """Draw ``danlu.plots.figures.<name>(*args)`` in a helper if one runs, else now."""
    if _pool is not None and _pool.submit(name, args):
        return
    _draw_now(name, args)


def finish() -> dict[str, str]:
    """Wait for every figure submitted so far, draw in line whatever a helper could not, and return the
    figures that failed both ways: {file name: error}."""
    if _pool is not None:
        for name, args in _pool.wait():
            _draw_now(name, args)
    problems = dict(_problems)
    _problems.clear()
    return problems


def stop() -> None:
    """Let the helpers exit (they also exit on their own when this process ends)."""
    global _pool
    if _pool is not None:
        finish()
        _pool.close()
        _pool = None
