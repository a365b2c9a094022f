"""CIFAR-10 speed: danlu's training loop against a plain PyTorch loop over the same net, old tree vs new.

    python benchmarks/cifar.py                              # plain loop, danlu (this tree), cifar10-fast
    python benchmarks/cifar.py --old /tmp/cifar-old         # also danlu from another checkout, back to back
    python benchmarks/cifar.py --samples 4000 --only cnn    # shorter
    python benchmarks/cifar.py --only fast                  # cifar10-fast's bf16 step against fp32

Each measurement runs in its own process (as `danlu train` does: glibc setting from danlu.runtime, same
torch threads) on the first --samples training images: one epoch (train.epochs=1) of danlu's own ``fit`` (its
samples_per_s excludes the validation pass), or the same number of steps of a plain loop (Conv 64 pad 1 →
ReLU → MaxPool 2 → FC 128 → ReLU → FC 10, Adam, batch 128, data normalized once, no augmentation). Printed
per run: samples/s, user and sys CPU seconds, samples per CPU-second (less sensitive to a shared machine's
load than wall time), minor page faults, and for cifar10-fast the GFLOP/s its training steps reach and that
as a fraction of a 2048² fp32 matmul's GFLOP/s measured in the same process. The matmul probe is printed
before and after. Data: CIFAR-10 as danlu finds it (DANLU_DATA), decoded once into a private cache.
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

# a worker imports danlu from the tree it measures (--tree), the rest from this checkout
_TREE = sys.argv[sys.argv.index("--tree") + 1] if "--tree" in sys.argv else None
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
if _TREE:
    sys.path.insert(0, _TREE)
from benchmarks.common import SHARED, matmul_gflops, print_header  # noqa: E402


def peak_gflops(seconds: float = 2.0) -> float:
    """fp32 GFLOP/s of a 2048² matmul: the most this CPU does right now, the yardstick for conv nets."""
    import torch

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        n += 1
    return 2 * 2048 ** 3 * n / (time.perf_counter() - t0) / 1e9


def _cpu() -> tuple[float, float, int]:
    import resource

    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime, u.ru_stime, u.ru_minflt


def _result(samples: int, wall: float, before: tuple, after: tuple, **extra) -> dict:
    user, sys_s = after[0] - before[0], after[1] - before[1]
    return {"samples_per_s": samples / wall, "user_s": user, "sys_s": sys_s,
            "samples_per_cpu_s": samples / max(1e-9, user + sys_s), "minflt": after[2] - before[2], **extra}


def worker(kind: str, recipe: str, samples: int, overrides: list[str]) -> dict:
    """One measurement, inside this process (called with --worker)."""
    import danlu.runtime

    danlu.runtime.keep_freed_memory()  # what the CLI does before training
    if hasattr(danlu.runtime, "allocate_big_blocks_from_heap"):  # an older tree (--old) may not have it
        danlu.runtime.allocate_big_blocks_from_heap()
    import torch

    from danlu.prepare import prepare
    from danlu.recipe import load_recipe

    r = load_recipe(recipe, [f"data.limit_train={samples}", "data.val_fraction=0.01", "train.epochs=1", *overrides])
    splits, schema, model = prepare(r)
    if kind == "danlu":
        from danlu.training.loop import build_loop, fit

        loop = build_loop(model, splits, schema, r)
        peak_before = peak_gflops() if recipe == "cifar10-fast" else 0.0
        before = _cpu()
        t0 = time.perf_counter()
        fit(loop)
        wall, after = time.perf_counter() - t0, _cpu()
        row = loop.history[-1]
        seen = len(splits.train)
        extra = {"input_shape": schema.input_shape, "samples_per_s_loop": row["samples_per_s"]}
        if recipe == "cifar10-fast":
            from danlu.models.fast import flops_per_sample

            train_flops = 3 * flops_per_sample(model, schema.input_shape)  # forward + backward ≈ 3 × forward
            extra["train_gflops"] = row["samples_per_s"] * train_flops / 1e9
            extra["peak_gflops"] = max(peak_before, peak_gflops())  # the machine's load moves: the better one
            extra["fraction_of_peak"] = extra["train_gflops"] / extra["peak_gflops"]
        res = _result(seen, wall, before, after, **extra)
        res["samples_per_s"] = row["samples_per_s"]  # training steps only, like the plain loop
        return res
    from torch import nn

    from danlu.data.tensors import Normalizer

    x_all = Normalizer(schema.mean, schema.std, schema.input_shape[0])(splits.train.x)
    y_all = splits.train.y
    c, h, w = schema.input_shape
    net = nn.Sequential(nn.Conv2d(c, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(64 * (h // 2) * (w // 2), 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.Adam(net.parameters(), lr=0.002, weight_decay=1e-4)
    loss_fn = nn.CrossEntropyLoss()
    order = torch.randperm(len(y_all), generator=torch.Generator().manual_seed(0))
    before, t0 = _cpu(), time.perf_counter()
    for idx in order.split(128):
        x, y = x_all[idx], y_all[idx]
        loss = loss_fn(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return _result(len(y_all), time.perf_counter() - t0, before, _cpu(), input_shape=[c, h, w])


def run_worker(tree: Path, kind: str, recipe: str, samples: int, overrides: list[str], cache: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "DANLU_CACHE": cache}
    env.setdefault("DANLU_DATA", str(SHARED / "datasets"))
    proc = subprocess.run([sys.executable, __file__, "--tree", str(tree), "--worker", kind, "--recipe", recipe,
                           "--samples", str(samples), *(["--set", *overrides] if overrides else [])],
                          capture_output=True, text=True, env=env, cwd=tree, timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} {recipe} in {tree} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", choices=["danlu", "plain"])
    ap.add_argument("--recipe", default="cifar10-cnn")
    ap.add_argument("--samples", type=int, default=8000, help="training images per measurement")
    ap.add_argument("--set", nargs="*", default=[], help="recipe overrides for the danlu runs")
    ap.add_argument("--old", type=Path, help="another checkout of danlu (e.g. git worktree add /tmp/cifar-old 675e5ee)")
    ap.add_argument("--only", choices=["cnn", "fast"])
    ap.add_argument("--tree", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.recipe, args.samples, args.set)))
        return
    print_header("danlu CIFAR-10 benchmark")
    here = Path(__file__).resolve().parents[1]
    cache = os.environ.get("DANLU_BENCH_CACHE") or tempfile.mkdtemp(prefix="danlu-bench-cifar-")
    runs = []
    if args.only in (None, "cnn"):
        runs.append(("plain loop, same net (this tree's data)", here, "plain", "cifar10-cnn", []))
        if args.old:
            runs.append((f"danlu cifar10-cnn, old tree {args.old}", args.old.resolve(), "danlu", "cifar10-cnn", []))
        runs.append(("danlu cifar10-cnn, this tree", here, "danlu", "cifar10-cnn", []))
    if args.only in (None, "fast"):
        # the recipe's bf16 training step against the same net in fp32, back to back (bf16 needs a CPU with
        # AVX512-BF16 or AMX; elsewhere both rows are fp32)
        runs.append(("danlu cifar10-fast, fp32 step (train.amp=true)", here, "danlu", "cifar10-fast",
                     ["train.amp=true"]))
        runs.append(("danlu cifar10-fast as shipped (train.amp=bf16)", here, "danlu", "cifar10-fast", []))
    print(f"{args.samples} training images per run; cache {cache}\n")
    print("| run | input | samples/s | user s | sys s | samples per CPU-s | minor faults | GFLOP/s (of peak) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for label, tree, kind, recipe, extra in runs:
        r = run_worker(tree, kind, recipe, args.samples, [*args.set, *extra], cache)
        peak = (f"{r['train_gflops']:.0f} of {r['peak_gflops']:.0f} ({100 * r['fraction_of_peak']:.0f} %)"
                if "train_gflops" in r else "")
        print(f"| {label} | {'×'.join(map(str, r['input_shape']))} | {r['samples_per_s']:,.0f} | {r['user_s']:.1f} | "
              f"{r['sys_s']:.1f} | {r['samples_per_cpu_s']:,.0f} | {r['minflt']:,} | {peak} |", flush=True)
    print(f"\nmatmul probe after the runs: {matmul_gflops():.0f} GFLOP/s; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
