"""What each compression buys: int8 quantization, structural pruning and distillation, against the issue's targets.

    DANLU_DATA=/work/shared/datasets .venv/bin/python benchmarks/compress.py                 # trains mnist-cnn
    .venv/bin/python benchmarks/compress.py --cnn-run runs/20250101-120000-mnist-cnn --seeds 3
    .venv/bin/python benchmarks/compress.py --only quantize --threads 1
    .venv/bin/python benchmarks/compress.py --only distill --seeds 3 --cnn-run RUN --runs-dir D --reuse  # resume
    .venv/bin/python benchmarks/compress.py --only text --lstm-run RUN --minilm-run RUN   # the text rows

Sections (each prints danlu's before/after table, timed with the same pinned threads for every variant):
- quantize: mnist-cnn → model.int8.onnx (ONNX Runtime static QDQ); targets >= 3.5x smaller file, >= 2x faster
  at batch 64 and faster at batch 1 than the fp32 ONNX model, <= 0.3 point accuracy loss.
- prune: mnist-cnn, 50 % of channels removed + 1 epoch of fine-tuning; targets <= 0.5 point loss, >= 1.5x faster
  at batch 64 (PyTorch).
- distill: mnist-mlp trained on labels alone vs mnist-mlp-distilled (teacher: the mnist-cnn run), same budget,
  over --seeds seeds; target: the distilled MLP has fewer test errors on average.
- text: chnsenticorp-lstm and sst2-minilm int8 (dynamic); targets LSTM >= 1.5x faster, MiniLM >= 3x smaller and
  >= 1.8x faster, <= 1 point loss each. Only with --only text (they train for minutes to hours on 2 cores).
The matmul probe is printed before and after: compare timings only between similar readings.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import SHARED, matmul_gflops, print_header, timed_cli  # noqa: E402


def check(label: str, ok: bool, detail: str) -> dict:
    print(f"- {'MET ' if ok else 'MISS'} {label}: {detail}")
    return {"target": label, "met": bool(ok), "detail": detail}


def train_run(recipe: str, runs_dir: Path, *overrides: str) -> tuple[Path, dict, float]:
    wall, out = timed_cli(["train", recipe, *overrides, "--runs-dir", str(runs_dir)])
    return Path(out["run"]), out["metrics"], wall


def quantize_section(run: Path, threads: int, calibration: int) -> dict:
    from danlu.compress.quantize import quantize_run

    r = quantize_run(run, calibration=calibration, threads=threads, max_drop=100, say=lambda m: print(f"  {m}"))
    print(r.table)
    _, fp32, int8 = r.variants
    smaller = fp32.file_bytes / int8.file_bytes
    b64, b1 = fp32.latency_ms[64] / int8.latency_ms[64], fp32.latency_ms[1] / int8.latency_ms[1]
    drop = fp32.metric - int8.metric
    return {"table": r.as_json(), "targets": [
        check("int8 file >= 3.5x smaller", smaller >= 3.5, f"{smaller:.2f}x"),
        check("int8 >= 2x faster at batch 64", b64 >= 2, f"{b64:.2f}x ({fp32.latency_ms[64]:.2f} -> "
              f"{int8.latency_ms[64]:.2f} ms)"),
        check("int8 faster at batch 1", b1 > 1, f"{b1:.2f}x ({fp32.latency_ms[1]:.3f} -> {int8.latency_ms[1]:.3f} ms)"),
        check("int8 loses <= 0.3 point", drop <= 0.3, f"{fp32.metric:.2f} -> {int8.metric:.2f} ({drop:+.2f})")]}


def prune_section(run: Path, threads: int, runs_dir: Path, fraction: float, epochs: float) -> dict:
    from danlu.compress.prune import prune_run

    r = prune_run(run, fraction, finetune_epochs=epochs, threads=threads, runs_dir=runs_dir, progress=False,
                  say=lambda m: print(f"  {m}"))
    print(r.table)
    base, new = r.variants
    b64 = base.latency_ms[64] / new.latency_ms[64]
    drop = base.metric - new.metric
    return {"table": r.as_json(), "targets": [
        check(f"pruned {fraction:g} + {epochs:g} epoch loses <= 0.5 point", drop <= 0.5,
              f"{base.metric:.2f} -> {new.metric:.2f} ({drop:+.2f})"),
        check("pruned >= 1.5x faster at batch 64", b64 >= 1.5, f"{b64:.2f}x ({base.latency_ms[64]:.2f} -> "
              f"{new.latency_ms[64]:.2f} ms)")]}


def finished_run(recipe: str, runs_dir: Path, *overrides: str) -> tuple[Path, dict, float] | None:
    """A finished run in runs_dir whose resolved recipe is exactly the one ``train_run`` would train (for --reuse:
    accuracy does not depend on when a run was trained; its wall time is then unknown, NaN)."""
    from danlu.recipe import load_recipe
    from danlu.runs.files import read_json
    from danlu.runs.store import list_runs, read_run_recipe

    wanted = load_recipe(recipe, list(overrides)).with_absolute_paths().to_dict()
    for run in reversed(list_runs(runs_dir)):
        try:
            done = read_json(run / "status.json").get("status") == "done"
            if done and read_run_recipe(run) == wanted:
                return run, read_json(run / "report.json")["metrics"], float("nan")
        except Exception:  # a damaged or foreign folder is simply not reused
            continue
    return None


def distill_section(teacher: Path, runs_dir: Path, seeds: int, reuse: bool = False) -> dict:
    """Three rows per seed: mnist-mlp as shipped (labels only), the distilled recipe with distillation off (the
    same student settings on labels alone: what the recipe's own choices buy without a teacher), and distilled."""
    variants = {"labels_only": ("mnist-mlp",), "labels_only_same": ("mnist-mlp-distilled", "train.distill=null"),
                "distilled": ("mnist-mlp-distilled", f"train.distill.teacher={teacher}")}
    rows = []
    for seed in range(seeds):
        row: dict = {"seed": seed}
        for key, (recipe, *extra) in variants.items():
            args = (recipe, runs_dir, f"seed={seed}", *extra)
            _, metrics, wall = (reuse and finished_run(*args)) or train_run(*args)
            row[key], row[f"{key}_s"] = metrics["accuracy"], round(wall, 1)
        rows.append(row)
        print(f"  seed {seed}: labels only {100 * row['labels_only']:.2f} %, the student's settings on labels "
              f"{100 * row['labels_only_same']:.2f} %, distilled {100 * row['distilled']:.2f} %")
    n_test = 10000

    def errors(key: str) -> list[float]:
        return [round((1 - r[key]) * n_test) for r in rows]

    sd = (lambda v: statistics.stdev(v) if len(v) > 1 else 0.0)
    cells = {k: f"{statistics.mean(errors(k)):.1f} ± {sd(errors(k)):.1f}" for k in variants}
    print(f"\n| mnist-mlp (784-128-10), 4 epochs | test errors of {n_test:,} (mean ± std over {seeds} seeds) |\n"
          f"| --- | ---: |\n| labels only (mnist-mlp: dropout 0.2) | {cells['labels_only']} |\n"
          f"| labels only, the student's settings (dropout 0) | {cells['labels_only_same']} |\n"
          f"| distilled from {teacher.name} (T 1, alpha 0.5, dropout 0) | {cells['distilled']} |\n")
    dist = statistics.mean(errors("distilled"))
    return {"rows": rows, "targets": [
        check("distilled MLP beats labels-only MLP (mean test errors)", dist < statistics.mean(errors("labels_only")),
              f"{statistics.mean(errors('labels_only')):.1f} -> {dist:.1f}"),
        check("distilled MLP beats the same settings on labels alone",
              dist < statistics.mean(errors("labels_only_same")),
              f"{statistics.mean(errors('labels_only_same')):.1f} -> {dist:.1f}")]}


def text_section(runs: dict[str, Path | None], threads: int, runs_dir: Path) -> dict:
    from danlu.compress.quantize import quantize_run

    out = {}
    goals = {"chnsenticorp-lstm": (None, 1.5), "sst2-minilm": (3.0, 1.8)}
    for recipe, run in runs.items():
        if run is None:
            print(f"  training {recipe} (pass --{recipe.split('-')[1]}-run RUN to reuse one)")
            run, _, wall = train_run(recipe, runs_dir)
            print(f"  trained in {wall:.0f} s: {run}")
        r = quantize_run(run, threads=threads, max_drop=100, say=lambda m: print(f"  {m}"))
        print(r.table)
        _, fp32, int8 = r.variants
        smaller, b64 = fp32.file_bytes / int8.file_bytes, fp32.latency_ms[64] / int8.latency_ms[64]
        drop = fp32.metric - int8.metric
        size_goal, speed_goal = goals[recipe]
        targets = [check(f"{recipe} int8 >= {speed_goal}x faster (batch 64)", b64 >= speed_goal, f"{b64:.2f}x"),
                   check(f"{recipe} int8 loses <= 1 point", drop <= 1, f"{fp32.metric:.2f} -> {int8.metric:.2f}")]
        if size_goal:
            targets.append(check(f"{recipe} int8 >= {size_goal}x smaller", smaller >= size_goal, f"{smaller:.2f}x"))
        out[recipe] = {"table": r.as_json(), "targets": targets}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cnn-run", type=Path, help="an mnist-cnn run (default: train one)")
    p.add_argument("--runs-dir", type=Path, default=Path("runs"))
    p.add_argument("--only", default="quantize,prune,distill", help="sections: quantize, prune, distill, text")
    p.add_argument("--threads", type=int, default=1, help="threads for every latency (PyTorch and ONNX Runtime)")
    p.add_argument("--calibration", type=int, default=256)
    p.add_argument("--fraction", type=float, default=0.5)
    p.add_argument("--finetune-epochs", type=float, default=1)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--reuse", action="store_true", help="distill: take the accuracy of a finished run in --runs-dir "
                                                        "with exactly the same resolved recipe instead of training it")
    p.add_argument("--lstm-run", type=Path)
    p.add_argument("--minilm-run", type=Path)
    p.add_argument("--out", type=Path, help="write every number as JSON here")
    a = p.parse_args()
    os.environ.setdefault("DANLU_DATA", str(SHARED / "datasets"))
    a.runs_dir = a.runs_dir.resolve()
    sections = set(a.only.split(","))
    print_header("danlu compress: int8, pruning, distillation")
    results: dict = {"threads": a.threads}
    cnn = a.cnn_run
    if sections & {"quantize", "prune", "distill"} and cnn is None:
        cnn, metrics, wall = train_run("mnist-cnn", a.runs_dir)
        print(f"trained mnist-cnn in {wall:.0f} s: {cnn} (accuracy {100 * metrics['accuracy']:.2f} %)\n")
    if "quantize" in sections:
        print("## int8 quantization of mnist-cnn (ONNX Runtime, static QDQ)\n")
        results["quantize"] = quantize_section(cnn, a.threads, a.calibration)
    if "prune" in sections:
        print(f"\n## structural pruning of mnist-cnn ({100 * a.fraction:g} % of channels, {a.finetune_epochs:g} "
              "epoch fine-tune)\n")
        results["prune"] = prune_section(cnn, a.threads, a.runs_dir, a.fraction, a.finetune_epochs)
    if "distill" in sections:
        print(f"\n## distillation: mnist-mlp from {cnn.name}, {a.seeds} seed(s)\n")
        results["distill"] = distill_section(cnn, a.runs_dir, a.seeds, a.reuse)
    if "text" in sections:
        print("\n## int8 (dynamic) of the text models\n")
        results["text"] = text_section({"chnsenticorp-lstm": a.lstm_run, "sst2-minilm": a.minilm_run}, a.threads,
                                       a.runs_dir)
    print(f"\nmatmul probe after: {matmul_gflops():.0f} GFLOP/s")
    if a.out:
        a.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
