"""Data-parallel scaling: training samples/s of one recipe in 1 and N processes (torch.distributed, gloo).

    python benchmarks/ddp.py                         # mnist-mlp on 12,000 images, 1 and 2 processes
    python benchmarks/ddp.py --recipe mnist-cnn --nproc 1 2 4 --limit 6000

Every run is `danlu train RECIPE [--nproc N]` as one CLI process with the same global batch; the number
is the training throughput of its epochs (metrics.jsonl's samples_per_s, summed over the ranks; the first
epoch is left out when there are several). Baselines from the same run: one process with one thread
(what each rank gets) and one process with torch's default threads. Efficiency = samples/s per process
over the one-thread process's. With a GPU, one GPU process is timed too (train.device=cuda).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # a site-packages "benchmarks" may shadow ours
from common import matmul_gflops, print_header, timed_cli  # noqa: E402


def throughput(run: str) -> float:
    rows = [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines()]
    rows = rows[1:] if len(rows) > 1 else rows
    return statistics.median(r["samples_per_s"] for r in rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipe", default="mnist-mlp")
    ap.add_argument("--nproc", type=int, nargs="+", default=[2])
    ap.add_argument("--limit", type=int, default=12000, help="data.limit_train")
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()
    import torch

    print_header(f"danlu train {args.recipe} --nproc N: data-parallel throughput")
    common = [f"data.limit_train={args.limit}", f"train.epochs={args.epochs}", "train.device=cpu"]
    rows: list[tuple[str, int, float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        def run(label: str, procs: int, extra: list[str], flags: list[str] = ()) -> float:
            wall, out = timed_cli(["train", args.recipe, *common, *extra, "--runs-dir", tmp, *flags])
            rate = throughput(out["run"])
            rows.append((label, procs, rate, wall))
            print(f"{label:<34} {rate:>10,.0f} samples/s  ({wall:.1f} s wall, test accuracy "
                  f"{out['metrics'].get('accuracy', float('nan')):.4f})", flush=True)
            return rate

        base = run("1 process, 1 thread", 1, ["train.threads=1"])
        run(f"1 process, {torch.get_num_threads()} threads (default)", 1, [])
        for n in args.nproc:
            run(f"{n} processes x 1 thread (gloo)", n, [], ["--nproc", str(n)])
        if torch.cuda.is_available():
            common[-1] = "train.device=cuda"
            run("1 GPU process", 1, [])
    print()
    print("| run | processes | samples/s | per process | efficiency |")
    print("| --- | --- | --- | --- | --- |")
    for label, procs, rate, _ in rows:
        print(f"| {label} | {procs} | {rate:,.0f} | {rate / procs:,.0f} | {rate / procs / base:.2f} |")
    print(f"\nmatmul probe after: {matmul_gflops():.0f} GFLOP/s")


if __name__ == "__main__":
    main()
