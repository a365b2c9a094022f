"""MNIST speed: wall time of `danlu train mnist-mlp` / `mnist-cnn` and loader throughput vs a DataLoader.

    python benchmarks/mnist.py                 # both recipes + loader comparison
    python benchmarks/mnist.py --only loader   # just the loader
    python benchmarks/mnist.py --transfer      # also imagefolder-efficientnet on hymenoptera (≈5 min)

Wall time is process start to exit of `danlu train RECIPE`, as a user runs it: data loading, training,
test evaluation, report and plots included. Each recipe runs --repeat times (median reported, all shown)
with a private decoded-data cache: the first run of the first recipe fills it from the gzipped IDX files
(cold), the rest find it warm, and the table says which. The transfer run is timed with a cold cache.
Targets (issue 2): mnist-mlp ≥ 97.6 % in ≤ 8 s, mnist-cnn ≥ 99.0 % in ≤ 40 s, loader ≥ 10× a torchvision
DataLoader (ToTensor + Normalize, 2 workers).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import SHARED, matmul_gflops, print_header, timed_cli  # noqa: E402


def loader_throughput(batch_size: int = 128, epochs: int = 2) -> tuple[float, float]:
    """samples/s of our TensorLoader and of a torchvision DataLoader over MNIST train, same batches."""
    import numpy as np
    import torch
    from torchvision import transforms

    from danlu.data.idx import load_idx_dataset
    from danlu.data.tensors import Normalizer, TensorLoader, TensorSplit

    images, labels = load_idx_dataset(SHARED / "datasets" / "mnist", "mnist")["train"]
    split = TensorSplit(torch.from_numpy(images[:, None].copy()), torch.from_numpy(labels))
    gen = torch.Generator().manual_seed(0)
    fast = TensorLoader(split, batch_size, kind="image", shuffle=True, generator=gen,
                        normalizer=Normalizer([0.1307], [0.3081], 1))
    t0 = time.perf_counter()
    n = 0
    for _ in range(epochs):
        for x, _y in fast:
            n += len(x)
    fast_rate = n / (time.perf_counter() - t0)

    class MnistArrays(torch.utils.data.Dataset):
        def __init__(self):
            self.tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])

        def __len__(self):
            return len(labels)

        def __getitem__(self, i):
            return self.tf(np.asarray(images[i])), int(labels[i])

    slow = torch.utils.data.DataLoader(MnistArrays(), batch_size=batch_size, shuffle=True, num_workers=2)
    t0 = time.perf_counter()
    n = 0
    for x, _y in slow:  # one epoch: it is the slow one
        n += len(x)
    slow_rate = n / (time.perf_counter() - t0)
    return fast_rate, slow_rate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=["mlp", "cnn", "loader"], default=None)
    ap.add_argument("--transfer", action="store_true")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per recipe (this machine is noisy)")
    args = ap.parse_args()
    os.environ.setdefault("DANLU_DATA", str(SHARED / "datasets"))
    print_header("danlu MNIST benchmark")
    rows = []
    runs = tempfile.mkdtemp(prefix="danlu-bench-")
    cache_dir = tempfile.TemporaryDirectory(prefix="danlu-bench-cache-")  # decoded MNIST, ~55 MB: removed at exit
    cache = cache_dir.name
    for recipe, target_acc, target_s in (("mnist-mlp", 0.976, 8), ("mnist-cnn", 0.990, 40)):
        if args.only and args.only != recipe.split("-")[1]:
            continue
        walls, states = [], []
        for _ in range(max(1, args.repeat)):
            states.append("warm" if any(Path(cache).rglob("*.npys")) else "cold")
            wall, res = timed_cli(["train", recipe, "--runs-dir", runs], env={"DANLU_CACHE": cache})
            walls.append(wall)
        acc = res["metrics"]["accuracy"]  # same seed, same number every run
        wall = statistics.median(walls)
        ok = acc >= target_acc and wall <= target_s
        runs_s = ", ".join(f"{w:.1f} ({c})" for w, c in zip(walls, states, strict=True))
        rows.append(f"| {recipe} | {acc:.4f} | {wall:.1f} s | {runs_s} | ≥{target_acc:.3f} in ≤{target_s} s | "
                    f"{'met' if ok else 'MISSED'} |")
    if rows:
        print("| recipe | test accuracy | median wall (process start → exit) | runs, s (cache) | target | |")
        print("| --- | --- | --- | --- | --- | --- |")
        print("\n".join(rows))
        print(f"\nmatmul probe after the runs: {matmul_gflops():.0f} GFLOP/s\n")
    if args.only in (None, "loader"):
        fast, slow = loader_throughput()
        print("| loader (MNIST train, batch 128) | samples/s |")
        print("| --- | --- |")
        print(f"| danlu TensorLoader (uint8 in memory, batched normalize) | {fast:,.0f} |")
        print(f"| torchvision DataLoader (ToTensor + Normalize, 2 workers) | {slow:,.0f} |")
        print(f"| ratio | {fast / slow:.1f}× (target ≥ 10×) |")
        print()
    if args.transfer:
        root = SHARED / "datasets" / "hymenoptera"
        with tempfile.TemporaryDirectory() as cache:
            wall, res = timed_cli(["train", "imagefolder-efficientnet", f"data.root={root}", "--runs-dir", runs],
                                  env={"DANLU_CACHE": cache})
        acc = res["metrics"]["accuracy"]
        print("| transfer | accuracy on hymenoptera val/ | wall (cold cache) | target |")
        print("| --- | --- | --- | --- |")
        print(f"| imagefolder-efficientnet | {acc:.4f} | {wall:.1f} s | ≥0.90 in < 300 s |")


if __name__ == "__main__":
    main()
