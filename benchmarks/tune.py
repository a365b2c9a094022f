"""Search speed: a digits-mlp study with and without pruning, Optuna's own overhead, danlu's per trial.

    python benchmarks/tune.py                # everything (~4 min on 2 cores)
    python benchmarks/tune.py --trials 10    # a quicker look

1. The default recipe (digits-mlp, 40 epochs) trained once: its best validation accuracy is the bar.
2. `danlu tune digits-mlp --trials N` with TPE + median pruning, then the same study (same sampler seed)
   with --pruner none, each as one CLI process timed from start to exit. Reported: best validation
   accuracy, wall time, epochs run; pruning must cut the epochs by >= 30 % (issue 9's target) and the
   pruned study must stay under 3 minutes and reach at least the default's validation accuracy.
3. Optuna alone: 100 trials of a trivial objective, in memory and on the journal file danlu uses.
4. danlu's overhead per trial: a trial's duration minus the time its epochs took (training + validation),
   i.e. the run folder, recipe, data, model, test evaluation and storage writes around the training.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import matmul_gflops, print_header, timed_cli  # noqa: E402


def optuna_overhead(storage_kind: str, folder: Path, n: int = 100) -> float:
    import optuna

    from danlu.tuning import _journal

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = None if storage_kind == "memory" else _journal(folder / f"trivial-{time.time_ns()}.log")
    t0 = time.perf_counter()
    study = optuna.create_study(storage=storage, sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: t.suggest_float("x", -10, 10) ** 2, n_trials=n)
    return time.perf_counter() - t0


def study_stats(folder: Path) -> dict:
    study = json.loads((folder / "study.json").read_text())
    epochs = sum(t["epochs"] or 0 for t in study["trials"])
    overheads = []
    for t in study["trials"]:
        if t["state"] != "complete" or not t["duration_s"]:
            continue
        rows = [json.loads(line) for line in (Path(t["run"]) / "metrics.jsonl").read_text().splitlines()]
        overheads.append(t["duration_s"] - sum(r["epoch_s"] for r in rows))
    return {"best": study["best"]["value"], "epochs": epochs, "counts": study["counts"],
            "overhead_median_s": statistics.median(overheads) if overheads else None}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=30)
    args = ap.parse_args()
    print_header("danlu tune: digits-mlp study, pruning, overheads")
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp) / "runs"
        env = {"DANLU_CACHE": str(Path(tmp) / "cache")}
        wall, default = timed_cli(["train", "digits-mlp", "--runs-dir", str(runs)], env=env)
        history = [json.loads(line) for line in (Path(default["run"]) / "metrics.jsonl").read_text().splitlines()]
        bar = max(h["val_accuracy"] for h in history)
        print(f"default recipe: best val_accuracy {bar:.4f}, test accuracy {default['metrics']['accuracy']:.4f}, "
              f"{len(history)} epochs, {wall:.1f} s\n")
        results = {}
        for pruner in ("median", "none"):
            study = f"bench-{pruner}"
            wall, summary = timed_cli(["tune", "digits-mlp", "--trials", str(args.trials), "--pruner", pruner,
                                       "--study", study, "--runs-dir", str(runs)], env=env)
            results[pruner] = {"wall_s": wall, **study_stats(runs / study)}
            r = results[pruner]
            print(f"TPE, pruner {pruner:<6}: best val_accuracy {r['best']:.4f}  {wall:6.1f} s  {r['epochs']:4d} epochs"
                  f"  {r['counts']}  danlu overhead per complete trial (median) {r['overhead_median_s']:.3f} s")
        cut = 1 - results["median"]["epochs"] / results["none"]["epochs"]
        pruned_s = results["median"]["wall_s"]
        print(f"\npruning cut the epochs run by {cut:.0%} (target >= 30 %); pruned study {pruned_s:.0f} s "
              f"(target < 180 s); best {results['median']['best']:.4f} vs default {bar:.4f} (target >=)")
        print()
        for kind in ("memory", "journal"):
            s = optuna_overhead(kind, Path(tmp))
            print(f"Optuna alone, 100 trivial trials, {kind} storage: {s:.3f} s (target < 1 s)")
    print(f"\nmatmul probe after: {matmul_gflops():.0f} GFLOP/s")


if __name__ == "__main__":
    main()
