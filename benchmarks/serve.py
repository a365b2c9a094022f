"""Serving throughput and latency: micro-batching against one forward pass per request, torch against ONNX.

    DANLU_DATA=/work/shared/datasets .venv/bin/python benchmarks/serve.py            # trains mnist-cnn (1 epoch)
    .venv/bin/python benchmarks/serve.py --run runs/20250101-120000-mnist-cnn        # or use a run you have

For each backend (torch, onnx) and each batching setting (--max-batch-size 64, and 1 as the baseline) it
starts ``danlu serve`` as a subprocess on 127.0.0.1, then runs a closed loop of 1, 8 and 32 concurrent
clients (one asyncio process with a minimal keep-alive HTTP/1.1 client), each sending single-image JSON
requests (base64 PNGs of MNIST test digits) back to back. Each level is bounded by --requests and --seconds,
so the script always stops by itself. The load generator shares the CPU with the server: on a 2-core
machine that is part of what is measured. Every setting runs --repeat times, the rounds interleaved, and
the table shows medians: on a shared machine one round can be 30 % off the next.
Backends: torch, onnx (model.onnx) and onnx-int8 (model.int8.onnx, danlu compress --quantize int8).
Targets on 2 cores: with 32 clients, batching >= 2x the baseline's requests/s and p99 < 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.common import SHARED, matmul_gflops, print_header  # noqa: E402


def versions() -> str:
    """Serving libraries, and whether uvicorn found its fast HTTP parser and event loop."""
    import importlib.util

    import fastapi
    import onnxruntime
    import uvicorn

    fast = [m for m in ("httptools", "uvloop") if importlib.util.find_spec(m)]
    return (f"- serving: onnxruntime {onnxruntime.__version__}, fastapi {fastapi.__version__}, uvicorn "
            f"{uvicorn.__version__} ({', '.join(fast) if fast else 'h11 + asyncio: no httptools/uvloop'})")


def get_run(args: argparse.Namespace) -> Path:
    if args.run:
        from danlu.runs.store import resolve_run

        return resolve_run(args.run)
    from danlu.api import train

    if not os.environ.get("DANLU_DATA") and (SHARED / "datasets").is_dir():
        os.environ["DANLU_DATA"] = str(SHARED / "datasets")
    print("training mnist-cnn for 1 epoch (pass --run RUN to skip this) ...", flush=True)
    result = train("mnist-cnn", ["train.epochs=1"], runs_dir=ROOT / "benchmarks" / "out" / "runs", progress=False)
    print(f"trained {result.run.name}: test accuracy {result.metrics.get('accuracy', float('nan')):.4f}", flush=True)
    return result.run


def payloads(run: Path, n: int = 64) -> list[bytes]:
    """JSON bodies, one MNIST test image each (PNG, base64)."""
    import json

    from PIL import Image

    from danlu.api import load_run, prepare

    _, recipe, _ = load_run(run)
    splits, _, _ = prepare(recipe, for_inference=True)
    images = splits.test.x[:n].numpy()  # uint8 [n, 1, 28, 28]
    bodies = []
    for img in images:
        buf = io.BytesIO()
        Image.fromarray(img[0]).save(buf, format="PNG")
        bodies.append(json.dumps({"inputs": [base64.b64encode(buf.getvalue()).decode()], "top_k": 3}).encode())
    return bodies


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``danlu serve`` in a subprocess, stopped with SIGTERM (graceful) at the end."""

    def __init__(self, run: Path, backend: str, max_batch_size: int, checkout: Path = ROOT, extra: tuple = ()):
        """``checkout``: the danlu source tree the server runs from (another one compares versions);
        ``extra``: more ``danlu serve`` options."""
        self.port = free_port()
        cmd = [sys.executable, "-m", "danlu", "serve", str(run), "--port", str(self.port), "--backend", backend,
               "--max-batch-size", str(max_batch_size), "--log-level", "warning", *extra]
        env = {**os.environ, "PYTHONPATH": str(checkout)}
        self.proc = subprocess.Popen(cmd, cwd=checkout, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 180.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stderr.read() if self.proc.stderr else ''}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("server did not become ready")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its descendants (``--workers``) so far (Linux /proc)."""
    total = 0.0
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        with open(f"/proc/{pid}/task/{task}/children") as f:
            total += sum(cpu_seconds(int(child)) for child in f.read().split())
    return total


def batch_stats(url: str) -> tuple[float, float]:
    """(sum, count) of danlu_batch_size from /metrics."""
    import httpx

    total = count = 0.0
    for line in httpx.get(url + "/metrics", timeout=5.0).text.splitlines():
        if line.startswith("danlu_batch_size_sum"):
            total = float(line.split()[-1])
        elif line.startswith("danlu_batch_size_count"):
            count = float(line.split()[-1])
    return total, count


class Connection:
    """A minimal HTTP/1.1 keep-alive client for POST /v1/predict.

    httpx cost 2.5-5 ms of CPU per request here, more than the server itself, and the load generator
    shares the 2 cores with the server; this one costs a few tens of microseconds.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def post(self, request: bytes) -> int:
        """Send one prepared request; read the whole response; return its status code."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        self.writer.close()


def raw_requests(port: int, bodies: list[bytes], path: str = "/v1/predict") -> list[bytes]:
    return [(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
             f"Content-Length: {len(b)}\r\n\r\n").encode() + b for b in bodies]


async def closed_loop(port: int, bodies: list[bytes], clients: int, max_requests: int, max_seconds: float,
                      path: str = "/v1/predict") -> tuple[list[float], int, float]:
    """Each client sends a request as soon as its previous one is answered; returns (latencies, failures, wall)."""
    requests = raw_requests(port, bodies, path)
    connections = [await Connection.open(port) for _ in range(clients)]
    for k, conn in enumerate(connections):  # warm up every connection
        await conn.post(requests[k % len(requests)])
    latencies: list[float] = []
    failures = 0
    sent = 0
    t_start = time.perf_counter()
    stop_at = t_start + max_seconds

    async def client(k: int, conn: Connection) -> None:
        nonlocal failures, sent
        i = k
        while sent < max_requests and time.perf_counter() < stop_at:
            sent += 1
            t0 = time.perf_counter()
            try:
                ok = await asyncio.wait_for(conn.post(requests[i % len(requests)]), 30.0) == 200
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
                ok = False
                conn.close()
                conn = await Connection.open(port)
            latencies.append(time.perf_counter() - t0)
            failures += not ok
            i += clients

    await asyncio.gather(*(client(k, c) for k, c in enumerate(connections)))
    wall = time.perf_counter() - t_start
    for conn in connections:
        conn.close()
    return latencies, failures, wall


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", help="a mnist-cnn (or any image) run; default: train mnist-cnn for 1 epoch")
    p.add_argument("--clients", default="1,8,32", help="concurrency levels")
    p.add_argument("--backends", default="torch,onnx", help="any of torch, onnx, onnx-int8 (quantized first "
                                                            "when the run has no model.int8.onnx)")
    p.add_argument("--requests", type=int, default=2000, help="most requests per level")
    p.add_argument("--seconds", type=float, default=10.0, help="longest a level runs")
    p.add_argument("--repeat", type=int, default=3,
                   help="rounds over every server setting, interleaved; medians are reported (noisy machines)")
    args = p.parse_args()
    if not os.environ.get("DANLU_DATA") and (SHARED / "datasets").is_dir():
        os.environ["DANLU_DATA"] = str(SHARED / "datasets")  # the test images come from the run's dataset
    print_header("danlu serve: micro-batching vs one forward pass per request")
    print(versions(), "\n", flush=True)
    run = get_run(args)
    if "onnx-int8" in args.backends.split(","):
        from danlu.compress.quantize import int8_is_current, quantize_run

        if not int8_is_current(Path(run)):
            quantize_run(run, say=lambda msg: print(f"  {msg}", flush=True))
    bodies = payloads(run)
    levels = [int(c) for c in args.clients.split(",")]
    samples: dict[tuple, list[tuple]] = {}
    for rnd in range(1, max(1, args.repeat) + 1):
        for backend in args.backends.split(","):
            for batch in (64, 1):
                server = Server(run, backend, batch)
                try:
                    server.wait_ready()
                    for clients in levels:
                        before = batch_stats(server.url)
                        lat, failed, wall = asyncio.run(closed_loop(server.port, bodies, clients, args.requests,
                                                                    args.seconds))
                        after = batch_stats(server.url)
                        mean_batch = (after[0] - before[0]) / max(1.0, after[1] - before[1])
                        sample = (len(lat), failed, len(lat) / wall, percentile(lat, 50) * 1e3,
                                  percentile(lat, 99) * 1e3, mean_batch)
                        samples.setdefault((backend, batch, clients), []).append(sample)
                        print(f"  round {rnd} {backend:<5} max-batch {batch:<3} clients {clients:<3} {sample[2]:8.1f} "
                              f"req/s  p50 {sample[3]:6.1f} ms  p99 {sample[4]:6.1f} ms  mean batch {mean_batch:5.1f}  "
                              f"failed {failed}", flush=True)
                finally:
                    server.stop()
    rows = []
    for (backend, batch, clients), got in samples.items():  # medians over rounds; requests and failures summed
        med = [statistics.median(v[k] for v in got) for k in range(2, 6)]
        rows.append((backend, batch, clients, sum(v[0] for v in got), sum(v[1] for v in got), *med))

    print(f"\nrun: {run}   load average after: {os.getloadavg()[0]:.2f}, matmul probe after: {matmul_gflops():.0f} "
          "GFLOP/s (other work on the machine skews timings)\n")
    print(f"medians over {max(1, args.repeat)} interleaved rounds:")
    print("| backend | max batch | clients | requests | failed | req/s | p50 ms | p99 ms | mean batch |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]} | {r[5]:.1f} | {r[6]:.1f} | {r[7]:.1f} | {r[8]:.1f} |")
    print()
    for backend in args.backends.split(","):
        top = max(levels)
        on = next((r for r in rows if r[0] == backend and r[1] == 64 and r[2] == top), None)
        off = next((r for r in rows if r[0] == backend and r[1] == 1 and r[2] == top), None)
        if on and off:
            # each round's batching server against the baseline that ran right after it, on the same machine
            paired = [a[2] / b[2] for a, b in zip(samples[(backend, 64, top)], samples[(backend, 1, top)], strict=True)]
            print(f"{backend}: {top} clients, batching {on[5]:.1f} req/s vs baseline {off[5]:.1f} req/s = "
                  f"{on[5] / off[5]:.2f}x (target >= 2x); per round {', '.join(f'{r:.2f}x' for r in paired)}, "
                  f"median {statistics.median(paired):.2f}x; p99 {on[7]:.1f} ms (target < 100 ms)")
    if any(r[4] for r in rows):
        print("FAILED REQUESTS: see the table")
        sys.exit(1)


if __name__ == "__main__":
    main()
