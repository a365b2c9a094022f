"""The articles' examples in full mode, against their targets: accuracy and wall time, process start → exit.

    python benchmarks/examples.py                       # all five (CIFAR-10 ~6 min, MiniLM not included)
    python benchmarks/examples.py mnist_mlp ants_bees_transfer
    python benchmarks/examples.py chinese_reviews --transfer   # adds the MiniLM fine-tune (~12 min)

Each script exits non-zero when it misses its target (tinygrad style); this prints a table either way.
Each run gets a fresh decoded-data cache, so times include decoding the data (cold).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import REPO, SHARED, matmul_gflops, print_header  # noqa: E402

EXAMPLES = ["mnist_mlp", "cifar10_cnn", "chinese_reviews", "mnist_cnn_and_linear_regression", "ants_bees_transfer"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("names", nargs="*", choices=[[], *EXAMPLES], default=EXAMPLES)
    ap.add_argument("--transfer", action="store_true", help="chinese_reviews also fine-tunes MiniLM")
    args = ap.parse_args()
    print_header("danlu examples, full mode")
    env = {**os.environ, "PYTHONPATH": str(REPO), "DANLU_EXAMPLE_SMALL": "0"}
    env.setdefault("DANLU_DATA", str(SHARED / "datasets"))
    rows, failed = [], []
    for name in args.names or EXAMPLES:
        with tempfile.TemporaryDirectory(prefix="danlu-examples-") as tmp:
            t0 = time.perf_counter()
            extra = ["--transfer"] if args.transfer and name == "chinese_reviews" else []
            proc = subprocess.run([sys.executable, str(REPO / "examples" / f"{name}.py"), *extra], cwd=tmp,
                                  env={**env, "DANLU_CACHE": str(Path(tmp) / "cache")}, capture_output=True,
                                  text=True)
            wall = time.perf_counter() - t0
        lines = proc.stdout.strip().splitlines()
        try:
            res = json.loads(lines[-1])
        except (IndexError, json.JSONDecodeError):
            rows.append(f"| {name} | crashed (exit {proc.returncode}) | | {wall:.1f} s | |")
            failed.append(name)
            print(proc.stderr[-2000:], file=sys.stderr)
            continue
        more = "; " + ", ".join(f"{k} {v:.4f}" for k, v in res.items() if k in ("r2", "f_of_3", "minilm_accuracy"))
        more = "" if more == "; " else more
        ok = proc.returncode == 0
        failed += [] if ok else [name]
        rows.append(f"| {name} | {res['accuracy']:.4f}{more} | ≥ {res['target']} | {wall:.1f} s | "
                    f"{'met' if ok else 'MISSED'} |")
        print(rows[-1], flush=True)
    print("\n| example | accuracy | target | wall (process start → exit, cold cache) | |")
    print("| --- | --- | --- | --- | --- |")
    print("\n".join(rows))
    print(f"\nmatmul probe after the runs: {matmul_gflops():.0f} GFLOP/s")
    if failed:
        raise SystemExit(f"missed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
