"""What tracking costs: mnist-mlp trained without and with ``--track tensorboard`` in one process, side by side.

    python benchmarks/tracking.py                  # the recipe's 4 epochs, each way once
    python benchmarks/tracking.py --epochs 1       # a quicker look

Reported: each run's wall time, and the seconds spent inside the tracker's hooks (the direct cost,
measured around each call: scalars, hparams, figures, the writer's flush and close) as a share of the
tracked run's wall time; the target is < 1 %. The wall-time difference is printed too, but on a shared
machine it is mostly noise: the in-hook share is the number to read.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import matmul_gflops, print_header  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=float, default=None, help="override train.epochs")
    p.add_argument("--recipe", default="mnist-mlp")
    a = p.parse_args()
    print_header(f"danlu tracking overhead: {a.recipe} with and without tensorboard")
    print(f"matmul probe: {matmul_gflops():.1f} GFLOP/s (fp32, 1 thread)")
    from danlu.api import train
    from danlu.training.tracking import TensorBoardTracker

    seconds: list[float] = []
    original = TensorBoardTracker.close

    def close(self, status):  # record the tracker's own clock once it is done
        original(self, status)
        seconds.append(self.seconds)

    TensorBoardTracker.close = close
    base = [f"train.epochs={a.epochs}"] if a.epochs else []
    with tempfile.TemporaryDirectory(prefix="danlu-track-bench-") as tmp:
        t0 = time.perf_counter()
        plain = train(a.recipe, base, runs_dir=Path(tmp), progress=False)
        plain_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        tracked = train(a.recipe, [*base, "train.track=[tensorboard]"], runs_dir=Path(tmp), progress=False)
        tracked_s = time.perf_counter() - t0
        events = sum(f.stat().st_size for f in (tracked.run / "tb").glob("events.*"))
    hooks = seconds[0]
    print(f"without tracking: {plain_s:.2f} s   test accuracy {plain.metrics.get('accuracy', float('nan')):.4f}")
    print(f"with tensorboard: {tracked_s:.2f} s   test accuracy {tracked.metrics.get('accuracy', float('nan')):.4f}"
          f"   event files {events / 1e6:.2f} MB")
    print(f"time in the tracker's hooks: {hooks * 1000:.1f} ms = {hooks / tracked_s * 100:.3f} % of the tracked run"
          f"   target < 1 %   {'OK' if hooks / tracked_s < 0.01 else 'MISSED'}")
    print(f"wall-time difference (noisy on a shared machine): {(tracked_s - plain_s) / plain_s * 100:+.1f} %")


if __name__ == "__main__":
    main()
