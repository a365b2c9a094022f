"""Studio speed on a large runs folder: list 500 runs (< 1 s) and open one (< 300 ms), over HTTP.

    python benchmarks/studio.py              # 500 runs
    python benchmarks/studio.py --runs 2000

One digits-mlp run is trained for real; 500 folders are made from it, each with its own recipe.yaml (lr
and seed varied), status.json, report.json, metrics.jsonl and plots, some damaged. Timed through the
studio's HTTP API (in-process client): the first list (every file parsed: a fresh studio process), a
second list (unchanged folders come from the (mtime, size) cache), and opening a run (median of 20).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import matmul_gflops, print_header  # noqa: E402


def make_runs(seed_run: Path, root: Path, n: int) -> list[str]:
    recipe = (seed_run / "recipe.yaml").read_text()
    report = json.loads((seed_run / "report.json").read_text())
    metrics = (seed_run / "metrics.jsonl").read_text()
    names = []
    for i in range(n):
        d = root / f"20260101-{i:06d}-digits-mlp"
        (d / "plots").mkdir(parents=True)
        varied = recipe.replace("lr: 0.", f"lr: 0.{i % 9 + 1}", 1).replace("seed: 0", f"seed: {i}")
        (d / "recipe.yaml").write_text(varied)
        report["metrics"]["accuracy"] = 0.8 + (i % 200) / 1000
        (d / "report.json").write_text(json.dumps(report, indent=2))
        (d / "metrics.jsonl").write_text(metrics)
        (d / "status.json").write_text('{"status": "do' if i % 50 == 7 else json.dumps({"status": "done", "epochs": 2}))
        for png in (seed_run / "plots").glob("*.png"):
            shutil.copy(png, d / "plots" / png.name)
        names.append(d.name)
    return names


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=500)
    a = p.parse_args()
    print_header("danlu studio: list and open on a large runs folder")
    print(f"matmul probe: {matmul_gflops():.1f} GFLOP/s (fp32, 1 thread)")
    from fastapi.testclient import TestClient

    from danlu.api import train
    from danlu.studio.app import create_studio_app

    with tempfile.TemporaryDirectory(prefix="danlu-studio-bench-") as tmp:
        tmp = Path(tmp)
        seed = train("digits-mlp", ["train.epochs=2"], runs_dir=tmp / "seed", progress=False).run
        names = make_runs(seed, tmp / "runs", a.runs)
        with TestClient(create_studio_app(tmp / "runs"), base_url="http://127.0.0.1") as c:
            t0 = time.perf_counter()
            r = c.get("/api/runs")
            cold = time.perf_counter() - t0
            rows = r.json()["runs"]
            damaged = sum(row["status"] == "damaged" for row in rows)
            t0 = time.perf_counter()
            c.get("/api/runs")
            warm = time.perf_counter() - t0
            opens = []
            for name in names[::max(1, len(names) // 20)][:20]:
                t0 = time.perf_counter()
                d = c.get(f"/api/runs/{name}")
                opens.append(time.perf_counter() - t0)
                assert d.status_code == 200
        print(f"runs listed: {len(rows)} ({damaged} damaged), response {len(r.content) / 1e6:.2f} MB")
        print(f"list, first (every file parsed): {cold * 1000:.0f} ms   target < 1000 ms   "
              f"{'OK' if cold < 1 else 'MISSED'}")
        print(f"list, again (cache by mtime/size): {warm * 1000:.0f} ms")
        median = statistics.median(opens)
        print(f"open a run (median of {len(opens)}, cold): {median * 1000:.1f} ms  (max {max(opens) * 1000:.1f})"
              f"   target < 300 ms   {'OK' if median < 0.3 else 'MISSED'}")


if __name__ == "__main__":
    main()
