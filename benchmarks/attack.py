"""The server and the studio under attack: each hostile request of issues 10 and 28 against a live
``danlu serve`` and ``danlu studio``, and the hostile run folders of issue 28 against the CLI, with their cost.

    DANLU_DATA=/work/shared/datasets .venv/bin/python benchmarks/attack.py          # trains digits-mlp + diabetes-mlp
    .venv/bin/python benchmarks/attack.py --run RUN --regression-run RUN2 --fast      # shorter timeouts
    .venv/bin/python benchmarks/attack.py --run RUN --regression-run RUN2 --only studio,cli   # issue 28's part

It starts ``danlu serve`` (an image run, an API key from a file, --max-connections 250; --fast also sets
--header-timeout 2 --body-timeout 4) as a child process on 127.0.0.1 and runs each case in turn while a
thread polls /healthz every 20 ms. For each case it prints: the HTTP status (or what happened to the
connection), the case's wall time, the server's peak resident memory during the case (VmHWM, reset before
each case) and its resident memory 1 s after, and /healthz latency (median and max) while the case ran.
The overflow case runs against a second server on a regression run. The studio's table (issue 28) is
measured the same way on ``danlu studio`` over a runs folder holding the image run beside hostile runs
(tests/hostile.py), with the studio's list timed while each case runs; the CLI's table runs each command
as a child process and reports its exit code, wall time and peak memory (ru_maxrss). Every wait is bounded.
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
    """``danlu serve RUN`` (or, with ``verb="studio"``, ``danlu studio --runs RUN``) as a child process."""

    def __init__(self, run: Path, *args: str, verb: str = "serve", health: str = "/healthz"):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        target = [str(run)] if verb == "serve" else ["--runs", str(run)]
        self.proc = subprocess.Popen([sys.executable, "-m", "danlu", verb, *target, "--port", str(self.port),
                                      "--log-level", "error", *args], env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        import httpx

        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"danlu {verb} {run} did not start")
            try:
                if httpx.get(self.url + health, timeout=2).status_code == 200:
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
    """GET ``path`` every 20 ms on one kept-alive connection; latencies per case."""

    def __init__(self, url: str, path: str = "/healthz"):
        import httpx

        self.path = path
        self.http = httpx.Client(base_url=url, timeout=30)
        self.samples: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self) -> None:
        while not self.stop.is_set():
            t0 = time.perf_counter()
            try:
                self.http.get(self.path)
                self.samples.append(time.perf_counter() - t0)
            except Exception:  # noqa: BLE001 - a failed probe is a very slow one
                self.samples.append(float("inf"))
            self.stop.wait(0.02)

    def take(self) -> list[float]:
        out, self.samples = self.samples, []
        return out


def post(url: str, body: object, headers: dict | None = None, n: int = 1, path: str = "/v1/predict") -> str:
    """n concurrent POSTs (default /v1/predict); their statuses."""
    import httpx

    headers = {"X-API-Key": KEY, "content-type": "application/json", **(headers or {})}
    data = json.dumps(body).encode() if not isinstance(body, bytes) else body

    def one(_: int) -> int:
        return httpx.post(url + path, content=data, headers=headers, timeout=120).status_code

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


def measure(served: Served, probe: HealthProbe, cases: list[tuple[str, Callable[[], str]]],
            lister: HealthProbe | None = None) -> None:
    """One table row per case: answer, time, peak and after RSS, probe latency (and list time, studio)."""
    extra = " studio list max ms |" if lister else ""
    print(f"| case | answer | time s | peak RSS MB | RSS after MB | {probe.path} p50 / max ms |{extra}")
    print("|---|---|---:|---:|---:|---:|" + ("---:|" if lister else ""))
    for name, case in cases:
        probe.take()
        if lister:
            lister.take()
        served.reset_peak()
        t0 = time.perf_counter()
        try:
            answer = case()
        except Exception as e:  # noqa: BLE001 - a case that breaks the client is a finding, not a crash
            answer = f"client error: {type(e).__name__}: {str(e)[:80]}"
        took = time.perf_counter() - t0
        peak = served.status("VmHWM")
        waits = probe.take()
        lists = lister.take() if lister else []
        time.sleep(1)
        after = served.status("VmRSS")
        lat = f"{statistics.median(waits) * 1e3:.1f} / {max(waits) * 1e3:.1f}" if waits else "-"
        listed = (f" {max(lists) * 1e3:.0f} |" if lists else " - |") if lister else ""
        print(f"| {name} | {answer} | {took:.2f} | {peak:.0f} | {after:.0f} | {lat} |{listed}", flush=True)


def serve_table(args: argparse.Namespace, image_run: Path, regression_run: Path) -> None:
    from tests.hostile import gif_screen, jpeg_sof, ppm_header

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
    big_explain = {"inputs": [b64(flat_png(8))], "target": "a" * 9_800_000}  # parsed, then an unknown label
    costly = b64(flat_png(2000))
    # payloads made before the cases: making them in the client held its GIL, and the /healthz probe with it
    tiff6000, rgba4000, rgba2700 = b64(float_tiff(6000)), b64(png_rgba16(4000, 4000)), b64(png_rgba16(2700, 2700))
    png1500 = b64(flat_png(1500))
    cases: list[tuple[str, Callable[[], str]]] = [
        ("baseline: one 8x8 PNG", lambda: post(url, {"inputs": [b64(flat_png(8))]})),
        (f"4 lossless WebPs of 6300x6300 ({len(bomb)} bytes each) in one request",
         lambda: post(url, {"inputs": [b64(bomb)] * 4})),
        ("float TIFF 6000x6000, 3 concurrent", lambda: post(url, {"inputs": [tiff6000]}, n=3)),
        ("16-bit RGBA PNG 4000x4000, 3 concurrent", lambda: post(url, {"inputs": [rgba4000]}, n=3)),
        ("16-bit RGBA PNG 2700x2700 (allowed), 3 concurrent",
         lambda: post(url, {"inputs": [rgba2700]}, n=3)),
        ("64 RGB PNGs of 1500x1500 in one request", lambda: post(url, {"inputs": [png1500] * 64})),
        ("a TGA image (format not served)",
         lambda: post(url, {"inputs": [b64(tga())]})),
        (f"#28 GIF with a 65535² screen ({len(gif_screen())} bytes)",
         lambda: post(url, {"inputs": [b64(gif_screen())]})),
        ("#28 PPM header of 60000²", lambda: post(url, {"inputs": [b64(ppm_header())]})),
        ("#28 JPEG SOF of 65500²", lambda: post(url, {"inputs": [b64(jpeg_sof())]})),
        ("#28 the same GIF on /v1/explain", lambda: post(url, {"inputs": [b64(gif_screen())]}, path="/v1/explain")),
        ("#28 9.8 MB JSON body to /v1/explain", lambda: post(url, big_explain, path="/v1/explain")),
        ("#28 8 concurrent explains of a 2000x2000 PNG", lambda: post(url, {"inputs": [costly]}, n=8,
                                                                       path="/v1/explain")),
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
    print(f"## danlu serve\n\nserver: {image_run.name}, defaults except --max-connections 250, --header-timeout "
          f"{header_s:g}, --body-timeout {body_s:g}; resident at start {served.status('VmRSS'):.0f} MB\n")
    try:
        measure(served, probe, cases)
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


def studio_folder(image_run: Path) -> Path:
    """A runs folder: the image run, hostile runs (tests/hostile.py), a figure linked to /etc/passwd, a
    run with a 20 MB metrics.jsonl (under the bound) and one with a 200 MB one (sparse, over it)."""
    import shutil

    from tests.hostile import hostile_runs

    root = Path(tempfile.mkdtemp(prefix="danlu-attack-studio-"))
    shutil.copytree(image_run, root / image_run.name)
    hostile_runs(root)
    leak = shutil.copytree(image_run, root / "20260102-000000-figure-link-out")
    (leak / "plots" / "leak.png").symlink_to("/etc/passwd")
    big = shutil.copytree(image_run, root / "20260102-000001-metrics-20mb")
    row = json.dumps({"epoch": 0, "train_loss": 0.5, "val_loss": 0.4, "val_accuracy": 0.9, "lr": 0.001,
                      "pad": "x" * 40})
    with (big / "metrics.jsonl").open("w") as f:
        for i in range(20_000_000 // len(row)):
            f.write(row.replace('"epoch": 0', f'"epoch": {i + 1}') + "\n")
    huge = shutil.copytree(image_run, root / "20260102-000002-metrics-200mb")
    with (huge / "metrics.jsonl").open("r+b") as f:
        f.truncate(200 << 20)
    return root


def get(url: str, path: str, n: int = 1) -> str:
    """n concurrent GETs: their statuses and the largest answer's size."""
    import httpx

    def one(_: int) -> tuple[int, int]:
        r = httpx.get(url + path, timeout=120)
        return r.status_code, len(r.content)

    with ThreadPoolExecutor(n) as pool:
        answers = list(pool.map(one, range(n)))
    codes = sorted({c for c, _ in answers})
    return f"{','.join(map(str, codes))}{f' x{n}' if n > 1 else ''}, {max(s for _, s in answers):,} bytes"


def studio_table(args: argparse.Namespace, image_run: Path) -> None:
    from tests.hostile import float_tiff as tiff_of

    root = studio_folder(image_run)
    served = Served(root, verb="studio", health="/api/info")
    url, port = served.url, served.port
    probe, lister = HealthProbe(url, "/api/info"), HealthProbe(url, "/api/runs")
    run = image_run.name
    tiff = tiff_of(9000)
    chunked = b"".join(b"%x\r\n%s\r\n" % (1 << 20, b" " * (1 << 20)) for _ in range(30)) + b"0\r\n\r\n"
    chunk_head = (f"POST /api/runs/{run}/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n").encode()
    cases: list[tuple[str, Callable[[], str]]] = [
        ("baseline: the list", lambda: get(url, "/api/runs")),
        ("40 concurrent lists (FIFO and /dev/zero run files present)", lambda: get(url, "/api/runs", n=40)),
        ("a run whose status.json is a FIFO", lambda: get(url, "/api/runs/20260101-000002-status-fifo")),
        ("a run whose status.json -> /dev/zero", lambda: get(url, "/api/runs/20260101-000001-status-dev-zero")),
        ("a 490-byte alias-bomb recipe.yaml", lambda: get(url, "/api/runs/20260101-000005-alias-bomb")),
        ("recipe.yaml -> /etc/passwd (detail)", lambda: get(url, "/api/runs/20260101-000006-recipe-link-out")),
        ("plots/leak.png -> /etc/passwd",
         lambda: get(url, "/api/runs/20260102-000000-figure-link-out/figures/leak.png")),
        (f"try it: float TIFF 9000² ({len(tiff) // 1000} KB)",
         lambda: post(url, {"inputs": [b64(tiff)]}, path=f"/api/runs/{run}/predict")),
        ("try it: the same TIFF, 8 concurrent", lambda: post(url, {"inputs": [b64(tiff)]}, n=8,
                                                           path=f"/api/runs/{run}/predict")),
        ("explain: the same TIFF", lambda: post(url, {"inputs": [b64(tiff)]}, path=f"/api/runs/{run}/explain")),
        ("30 MB chunked body (limit 10 MiB)", lambda: raw(port, chunked, prefix=chunk_head)),
        ("a run name of 5,000 characters", lambda: get(url, "/api/runs/" + "x" * 5000)),
        ("a run with a 20 MB metrics.jsonl (detail)", lambda: get(url, "/api/runs/20260102-000001-metrics-20mb")),
        ("its metrics, second page", lambda: get(url, "/api/runs/20260102-000001-metrics-20mb/metrics?after=5000")),
        ("a run with a 200 MB metrics.jsonl", lambda: get(url, "/api/runs/20260102-000002-metrics-200mb")),
        ("headers sent a byte every 0.5 s", lambda: raw(port, b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
                                                        trickle=0.5, limit_s=20)),
        ("1,100 idle connections (cap 1000)", lambda: half_open(port, 1100, 11)),
    ]
    print(f"\n## danlu studio (issue 28)\n\nstudio over {root} ({len(list(root.iterdir()))} runs, hostile ones "
          f"among them), defaults; resident at start {served.status('VmRSS'):.0f} MB\n")
    try:
        measure(served, probe, cases, lister)
    finally:
        probe.stop.set()
        lister.stop.set()
        served.stop()


def cli_case(args: list[str], limit_s: float = 120) -> str:
    """``danlu ARGS`` as a child under an 8 GiB address-space cap: exit code, its error, wall time, and its
    own peak memory (``wait4``'s ru_maxrss of that child alone)."""
    import resource

    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-m", "danlu", *args], stdout=subprocess.DEVNULL, stderr=err,
                                env={**os.environ, "PYTHONPATH": str(ROOT)},
                                preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30)))
        code, usage = f"hung > {limit_s:g} s", None
        while time.perf_counter() - t0 < limit_s:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                code = str(os.waitstatus_to_exitcode(status))
                break
            time.sleep(0.02)
        else:
            proc.kill()
            _, _, usage = os.wait4(proc.pid, 0)
        proc.returncode = 0  # reaped here
        err.seek(0)
        text = err.read().decode(errors="replace")
    took = time.perf_counter() - t0
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if line.startswith(("error", "internal"))), None)
    message = " ".join(x.strip() for x in lines[first:first + 2]) if first is not None else ""
    return f"{code} | {message[:140].replace('|', '/')} | {took:.2f} | {usage.ru_maxrss / 1024:.0f}"


def cli_table(args: argparse.Namespace, image_run: Path) -> None:
    from tests.hostile import alias_bomb_name, fake_run, hostile_runs

    root = Path(tempfile.mkdtemp(prefix="danlu-attack-cli-"))
    hostile_runs(root / "runs")
    fake_run(root / "names", "20260101-000000-a\nforged\x1b[2J\u202e")
    (root / "fifo").parent.mkdir(exist_ok=True)
    os.mkfifo(root / "fifo")
    bomb_run = fake_run(root / "bomb", "r", recipe=alias_bomb_name())
    runs = str(root / "runs")
    cases = [
        ("danlu runs (FIFO, /dev/zero, 200 MB and link-out run files)", ["runs", "--runs-dir", runs]),
        ("danlu runs (a run folder named with newline, ESC, RTL)", ["runs", "--runs-dir", str(root / "names")]),
        ("danlu runs show: alias-bomb recipe", ["runs", "show", str(bomb_run)]),
        ("danlu runs show: recipe.yaml a FIFO", ["runs", "show", "20260101-000003-recipe-fifo", "--runs-dir", runs]),
        ("danlu runs show <5,000 characters>", ["runs", "show", "x" * 5000]),
        ("danlu tune --study <300 characters>", ["tune", "digits-mlp", "--study", "s" * 300]),
        ("danlu tune --study with ESC", ["tune", "digits-mlp", "--study", "a\x1b[2Jb"]),
        ("danlu tune --storage sqlite:///:memory:", ["tune", "digits-mlp", "--trials", "1",
                                                     "--storage", "sqlite:///:memory:", "--runs-dir", str(root)]),
        ("danlu runs compare --png a folder", ["runs", "compare", str(image_run), str(image_run), "--png", str(root)]),
        ("danlu runs compare --png /proc/version", ["runs", "compare", str(image_run), str(image_run),
                                                    "--png", "/proc/version"]),
        ("danlu explain --out an existing file", ["explain", str(image_run), "/dev/null", "--out", str(root / "fifo")]),
        ("danlu explain --top-losses 1000000000", ["explain", str(image_run), "--top-losses", "1000000000"]),
        ("danlu train train.threads=100000", ["train", "digits-mlp", "train.threads=100000", "--runs-dir", str(root)]),
        ("danlu predict RUN a FIFO", ["predict", str(image_run), str(root / "fifo")]),
        ("danlu predict RUN /dev/zero", ["predict", str(image_run), "/dev/zero"]),
        ("danlu serve --api-key-file a FIFO", ["serve", str(image_run), "--api-key-file", str(root / "fifo")]),
        ("danlu serve --api-key-file /dev/zero", ["serve", str(image_run), "--api-key-file", "/dev/zero"]),
    ]
    if args.text_run:
        line = root / "line.txt"
        line.write_bytes(b"word " * 20_000_000 + b"\n")  # one 100 MB line
        cases.append(("danlu predict TEXT_RUN --file (one 100 MB line)", ["predict", args.text_run, "--file",
                                                                          str(line)]))
    print("\n## the CLI on hostile run folders, names, paths and settings (issue 28)\n")
    print("| case | exit | message | time s | peak RSS MB |")
    print("|---|---:|---|---:|---:|")
    for name, argv in cases:
        print(f"| {name} | {cli_case(argv)} |", flush=True)
    left = [p.name for p in root.iterdir() if p.is_dir() and (p / "status.json").exists()
            and json.loads((p / "status.json").read_text()).get("status") == "training"]
    print(f"\nruns left at status training: {left or 'none'}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", help="an image run (default: train digits-mlp for 1 epoch)")
    p.add_argument("--regression-run", help="a regression run (default: train diabetes-mlp for 1 epoch)")
    p.add_argument("--text-run", help="a text run, for the 100 MB line to predict --file (left out without)")
    p.add_argument("--fast", action="store_true", help="serve with --header-timeout 2 --body-timeout 4")
    p.add_argument("--only", default="serve,studio,cli", help="the tables to run (serve, studio, cli)")
    args = p.parse_args()
    print_header("danlu serve, the studio and the CLI under attack (benchmarks/attack.py)")
    image_run, regression_run = train_runs(args)
    only = set(args.only.split(","))
    if "serve" in only:
        serve_table(args, image_run, regression_run)
    if "studio" in only:
        studio_table(args, image_run)
    if "cli" in only:
        cli_table(args, image_run)


if __name__ == "__main__":
    main()
