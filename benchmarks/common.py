"""What every benchmark prints first: the machine and library versions, so numbers can be compared."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DANLU_SHARED", REPO.parent / "shared"))


def machine() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    info = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available()
            else "none"}
    try:
        info["load_avg_1m"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    return info


def matmul_gflops(seconds: float = 1.0) -> float:
    """fp32 GFLOP/s of a 256x784 @ 784x128 matmul (mnist-mlp's big layer) with torch's threads, right now.

    The development machines are shared VMs whose speed moves with their hosts' load (an AMD one read ~60
    quiet and 25-35 busy, an Intel one 150-210), and every timing moves with it, so the benchmarks print it
    before and after their runs: compare timings only between similar readings.
    """
    import torch

    x, w = torch.randn(256, 784), torch.randn(784, 128)
    for _ in range(10):
        x @ w
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        x @ w
        n += 1
    return 2 * 256 * 784 * 128 * n / (time.perf_counter() - t0) / 1e9


def print_header(title: str) -> None:
    print(f"# {title}")
    for k, v in machine().items():
        print(f"- {k}: {v}")
    print(f"- matmul probe: {matmul_gflops():.0f} GFLOP/s (compare timings only between similar readings)")
    print()


def timed_cli(args: list[str], env: dict | None = None, timeout: int = 1800) -> tuple[float, dict]:
    """Wall time of `danlu ARGS --json` from process start to exit, and its JSON result."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "danlu", *args, "--json", "--quiet"], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout, cwd=REPO)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"danlu {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return wall, json.loads(proc.stdout.strip().splitlines()[-1])
