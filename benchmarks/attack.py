"""The server under attack: each hostile request of issue 10 against a live ``danlu serve``, with its cost.

    DANLU_DATA=/work/shared/datasets .venv/bin/python benchmarks/attack.py          # trains digits-mlp + diabetes-mlp
    .venv/bin/python benchmarks/attack.py --run RUN --regression-run RUN2 --fast      # shorter timeouts

It starts ``danlu serve`` (an image run, an API key from a file, --max-connections 250; --fast also sets
--header-timeout 2 --body-timeout 4) as a child process on 127.0.0.1 and runs each case in turn while a
thread polls /healthz every 20 ms. For each case it prints: the HTTP status (or what happened to the
connection), the case's wall time, the server's peak resident memory during the case (VmHWM, reset before
each case) and its resident memory 1 s after, and /healthz latency (median and max) while the case ran.
The overflow case runs against a second server on a regression run. Every wait is bounded.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import re
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.common import SHARED, print_header  # noqa: E402

KEY = "attack-key"


# ---------------------------------------------------------------- payloads


def encoded(img, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **options)
    return buf.getvalue()


def webp_bomb(side: int) -> bytes:
    from PIL import Image

    return encoded(Image.new("RGB", (side, side), (255, 255, 255)), "WEBP", lossless=True, quality=0, method=0)


def float_tiff(side: int) -> bytes:
    import numpy as np
    from PIL import Image

    return encoded(Image.fromarray(np.zeros((side, side), dtype=np.float32)), "TIFF", compression="tiff_adobe_deflate")


def png_rgba16(width: int, height: int) -> bytes:
    row = b"\x00" + b"\x80\x00" * 4 * width

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, 6, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(row * height, 9))
            + chunk(b"IEND", b""))


def flat_png(side: int) -> bytes:
    from PIL import Image

    return encoded(Image.new("RGB", (side, side), (9, 9, 9)), "PNG")


def tga() -> bytes:
    from PIL import Image

    return encoded(Image.new("RGB", (8, 8)), "TGA")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# ---------------------------------------------------------------- the server and its measurements


class Served:
    def __init__(self, run: Path, *args: str):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen([sys.executable, "-m", "danlu", "serve", str(run), "--port", str(self.port),
                                      "--log-level", "error", *args], env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        import httpx

        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"danlu serve {run} did not start")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)

    def status(self, field: str) -> float:
        text = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(rf"{field}:\s+(\d+)", text).group(1)) / 1024

    def reset_peak(self) -> None:
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)


class HealthProbe:
    """GET /healthz every 20 ms on one kept-alive connection; latencies per case."""

    def __init__(self, url: str):
        import httpx

        self.http = httpx.Client(base_url=url, timeout=30)
        self.samples: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self) -> None:
        while not self.stop.is_set():
            t0 = time.perf_counter()
            try:
                self.http.get("/healthz")
                self.samples.append(time.perf_counter() - t0)
            except Exception:  # noqa: BLE001 - a failed probe is a very slow one
                self.samples.append(float("inf"))
            self.stop.wait(0.02)

    def take(self) -> list[float]:
        out, self.samples = self.samples, []
        return out


def post(url: str, body: object, headers: dict | None = None, n: int = 1) -> str:
    """n concurrent POST /v1/predict; their statuses."""
    import httpx

    headers = {"X-API-Key": KEY, "content-type": "application/json", **(headers or {})}
    data = json.dumps(body).encode() if not isinstance(body, bytes) else body

    def one(_: int) -> int:
        return httpx.post(url + "/v1/predict", content=data, headers=headers, timeout=120).status_code

    with ThreadPoolExecutor(n) as pool:
        codes = list(pool.map(one, range(n)))
    return ",".join(map(str, codes)) if len(set(codes)) > 1 else f"{codes[0]}" + (f" x{n}" if n > 1 else "")


def raw(port: int, data: bytes, trickle: float = 0.0, limit_s: float = 90, prefix: bytes = b"") -> str:
    """Send ``prefix`` at once, then data (a byte every ``trickle`` s when set, else 64 KB every 10 ms) until
    the server answers or closes; what it did, and how much of data had been sent by then."""
    import select

    with socket.create_connection(("127.0.0.1", port), timeout=limit_s) as s:
        s.sendall(prefix)
        sent, t_end = 0, time.monotonic() + limit_s
        step = 1 if trickle else 1 << 16
        try:
            while time.monotonic() < t_end:
                if sent < len(data):
                    s.sendall(data[sent:sent + step])
                    sent += step
                readable, _, _ = select.select([s], [], [], trickle if trickle or sent >= len(data) else 0.01)
                if readable:
                    answer = s.recv(4096)
                    first = answer.split(b"\r\n", 1)[0].decode(errors="replace") if answer else "closed"
                    return f"{first} after {min(sent, len(data)):,} bytes sent"
                if sent >= len(data) and not trickle:
                    select.select([s], [], [], max(0.0, t_end - time.monotonic()))
        except (ConnectionResetError, BrokenPipeError):
            return f"reset after {min(sent, len(data)):,} bytes sent"
        return f"still open after {limit_s:g} s"


def idle(port: int, limit_s: float) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=limit_s) as s:
        try:
            return "closed" if s.recv(10) == b"" else "answered"
        except TimeoutError:
            return f"still open after {limit_s:g} s"


def half_open(port: int, n: int, wait_s: float) -> str:
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.setblocking(False)
        socks.append(s)
    time.sleep(0.3)
    refused = sum(_closed(s) for s in socks)
    time.sleep(wait_s)
    held = n - sum(_closed(s) for s in socks)
    for s in socks:
        s.close()
    return f"{refused} refused at once, {held} held after {wait_s:g} s"


def _closed(s: socket.socket) -> bool:
    try:
        s.recv(4096)  # an answer (the 503) or the end of the stream
        return True
    except BlockingIOError:
        return False
    except OSError:
        return True


# ---------------------------------------------------------------- main


def train_runs(args: argparse.Namespace) -> tuple[Path, Path]:
    from danlu.api import train
    from danlu.runs.store import resolve_run

    if args.run and args.regression_run:
        return resolve_run(args.run), resolve_run(args.regression_run)
    if not os.environ.get("DANLU_DATA") and (SHARED / "datasets").is_dir():
        os.environ["DANLU_DATA"] = str(SHARED / "datasets")
    out = ROOT / "benchmarks" / "out" / "runs"
    image = resolve_run(args.run) if args.run else train("digits-mlp", ["train.epochs=1"], runs_dir=out,
                                                          progress=False).run
    regression = resolve_run(args.regression_run) if args.regression_run else train(
        "diabetes-mlp", ["train.epochs=1"], runs_dir=out, progress=False).run
    return image, regression


def overflowing_row(run: Path) -> list[float]:
    import numpy as np
    import torch

    from danlu.predictor import Predictor

    p = Predictor.load(run)
    for value in np.geomspace(1e30, 3e38, 400):
        for sign in (1.0, -1.0):
            row = [float(sign * value)] * len(p.schema.features)
            x = p.to_tensor([row])
            if torch.isfinite(x).all() and not torch.isfinite(p.forward(x)).all():
                return row
    return [1e37] * len(p.schema.features)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", help="an image run (default: train digits-mlp for 1 epoch)")
    p.add_argument("--regression-run", help="a regression run (default: train diabetes-mlp for 1 epoch)")
    p.add_argument("--fast", action="store_true", help="serve with --header-timeout 2 --body-timeout 4")
    args = p.parse_args()
    print_header("danlu serve under attack (benchmarks/attack.py)")
    image_run, regression_run = train_runs(args)
    header_s, body_s = (2.0, 4.0) if args.fast else (10.0, 30.0)
    key_file = Path(tempfile.mkdtemp()) / "key"
    key_file.write_text(KEY + "\n")
    served = Served(image_run, "--api-key-file", str(key_file), "--max-connections", "250",
                    "--header-timeout", str(header_s), "--body-timeout", str(body_s))
    url, port = served.url, served.port
    probe = HealthProbe(url)
    small = json.dumps({"inputs": [b64(flat_png(8))]}).encode()
    head = (f"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {KEY}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(small)}\r\n\r\n").encode()
    bomb = webp_bomb(6300)
    cases: list[tuple[str, Callable[[], str]]] = [
        ("baseline: one 8x8 PNG", lambda: post(url, {"inputs": [b64(flat_png(8))]})),
        (f"4 lossless WebPs of 6300x6300 ({len(bomb)} bytes each) in one request",
         lambda: post(url, {"inputs": [b64(bomb)] * 4})),
        ("float TIFF 6000x6000, 3 concurrent", lambda: post(url, {"inputs": [b64(float_tiff(6000))]}, n=3)),
        ("16-bit RGBA PNG 4000x4000, 3 concurrent", lambda: post(url, {"inputs": [b64(png_rgba16(4000, 4000))]}, n=3)),
        ("16-bit RGBA PNG 2700x2700 (allowed), 3 concurrent",
         lambda: post(url, {"inputs": [b64(png_rgba16(2700, 2700))]}, n=3)),
        ("64 RGB PNGs of 1500x1500 in one request", lambda: post(url, {"inputs": [b64(flat_png(1500))] * 64})),
        ("a TGA image (format not served)",
         lambda: post(url, {"inputs": [b64(tga())]})),
        ("JSON sent as text/plain (a web page's simple request)",
         lambda: post(url, small, {"content-type": "text/plain"})),
        ("foreign Host (DNS rebinding)", lambda: post(url, small, {"host": "rebind.example:8000"})),
        ("10 MB body declared without the API key",
         lambda: raw(port, b" " * 10_000_000, prefix=b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 10000000\r\n\r\n")),
        ("100 MB request header", lambda: raw(port, b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * 100_000_000)),
        ("idle connection, nothing sent", lambda: idle(port, header_s + 10)),
        ("headers sent a byte every 0.5 s", lambda: raw(port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
                                                        trickle=0.5, limit_s=header_s + 10)),
        ("body trickled a byte every 0.5 s", lambda: raw(port, small, trickle=0.5, limit_s=body_s + 90, prefix=head)),
        ("300 half-open connections (cap 250)", lambda: half_open(port, 300, header_s + 1)),
    ]
    print(f"server: {image_run.name}, defaults except --max-connections 250, --header-timeout {header_s:g}, "
          f"--body-timeout {body_s:g}; resident at start {served.status('VmRSS'):.0f} MB\n")
    print("| case | answer | time s | peak RSS MB | RSS after MB | /healthz p50 / max ms |")
    print("|---|---|---:|---:|---:|---:|")
    try:
        for name, case in cases:
            probe.take()
            served.reset_peak()
            t0 = time.perf_counter()
            answer = case()
            took = time.perf_counter() - t0
            peak = served.status("VmHWM")
            waits = probe.take()
            time.sleep(1)
            after = served.status("VmRSS")
            lat = f"{statistics.median(waits) * 1e3:.1f} / {max(waits) * 1e3:.1f}" if waits else "-"
            print(f"| {name} | {answer} | {took:.2f} | {peak:.0f} | {after:.0f} | {lat} |", flush=True)
    finally:
        probe.stop.set()
        served.stop()
    regression = Served(regression_run)
    try:
        row = overflowing_row(regression_run)
        t0 = time.perf_counter()
        answer = post(regression.url, {"inputs": [row]})
        print(f"| regression features of {abs(row[0]):.3g} (output overflows float32) | {answer} | "
              f"{time.perf_counter() - t0:.2f} | - | - | - |")
    finally:
        regression.stop()


if __name__ == "__main__":
    main()
