"""Audio: read + featurize throughput from a warm cache, and the Mandarin tone targets (issue 26).

    python benchmarks/audio.py throughput            # one-second clips/s: cached read, log-mel, pitch track
    python benchmarks/audio.py tones [overrides...]  # mandarin-tones: four tones, syllables held out, per speaker
    python benchmarks/audio.py cross [overrides...]  # mandarin-tones-cross-speaker, both directions
    python benchmarks/audio.py all

Needs gcin-voice under DANLU_DATA (or ../shared/datasets). Training time is reported as wall seconds and
as the process's CPU seconds (user + sys): the development machines are shared, and the CPU seconds say
what the run costs on 2 idle cores better than the wall clock of a loaded box does.
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import SHARED, print_header  # noqa: E402


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime


def throughput(clips: int = 2000) -> None:
    """Synthetic one-second clips written as WAV, decoded once into the cache, then read warm and featurized."""
    import numpy as np
    import soundfile as sf
    import torch

    from danlu.data import load
    from danlu.models.audio_features import LogMel, PitchContour
    from danlu.recipe import DataConfig

    rate = 16_000
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rng = np.random.default_rng(0)
        for i in range(clips):
            f0 = 100 + 300 * rng.random()
            t = np.arange(rate) / rate
            x = 0.3 * np.sin(2 * np.pi * f0 * t * (1 + 0.2 * t)) + 0.01 * rng.standard_normal(rate)
            (root / f"c{i % 4}").mkdir(exist_ok=True)
            sf.write(root / f"c{i % 4}" / f"{i}.wav", x.astype(np.float32), rate, subtype="PCM_16")
        cfg = DataConfig(name="audiofolder", root=root, seconds=1.0, sample_rate=rate)
        t0, c0 = time.perf_counter(), _cpu()
        load(cfg, seed=0)
        cold = (time.perf_counter() - t0, _cpu() - c0)
        t0, c0 = time.perf_counter(), _cpu()
        splits, _ = load(cfg, seed=0)
        warm = (time.perf_counter() - t0, _cpu() - c0)
    x = torch.cat([splits.train.x, splits.val.x, splits.test.x])
    logmel = LogMel(rate, n_fft=512, win_length=400, hop=160, n_mels=40)
    pitch = PitchContour(rate, 160)
    with torch.no_grad():
        t0, c0 = time.perf_counter(), _cpu()
        for batch in x.split(256):
            logmel(batch.float() / 32768)
        mel = (time.perf_counter() - t0, _cpu() - c0)
        t0, c0 = time.perf_counter(), _cpu()
        for batch in x.split(256):
            pitch(batch.float() / 32768)
        pitch_t = (time.perf_counter() - t0, _cpu() - c0)
    n = len(x)
    threads = torch.get_num_threads()
    print(f"| step ({n} one-second clips, {threads} threads) | wall s | clips/s | CPU s | clips per CPU-s |")
    print("| --- | --- | --- | --- | --- |")
    rows = [("decode WAV + resample + cache (cold)", cold), ("warm read (cache → int16 tensors, splits)", warm),
            ("log-mel 40 bands (torch, batches of 256)", mel), ("pitch contour (YIN at 8 kHz)", pitch_t),
            ("warm read + log-mel", (warm[0] + mel[0], warm[1] + mel[1])),
            ("warm read + log-mel + pitch", (warm[0] + mel[0] + pitch_t[0], warm[1] + mel[1] + pitch_t[1]))]
    for name, (wall, cpu) in rows:
        print(f"| {name} | {wall:.3f} | {n / wall:,.0f} | {cpu:.2f} | {n / max(cpu, 1e-9):,.0f} |")
    print()


def _per_speaker(run: Path, split: str = "test") -> dict[str, float]:
    """Accuracy of a run on its own split, per speaker (the clip file's stem)."""
    import torch

    from danlu.data import load
    from danlu.predictor import Predictor

    predictor = Predictor.load(run)
    splits, _ = load(predictor.recipe.data, seed=predictor.recipe.seed, data_dir=SHARED / "datasets")
    part = getattr(splits, split)
    with torch.no_grad():
        pred = torch.cat([predictor.model(b.float() / 32768).argmax(1) for b in part.x.split(512)])
    speakers = [Path(n).stem for n in part.names]
    out = {}
    for s in sorted(set(speakers)):
        idx = torch.tensor([i for i, v in enumerate(speakers) if v == s])
        out[s] = float((pred[idx] == part.y[idx]).float().mean())
    return out


def _train(recipe: str, overrides: list[str]) -> tuple[Path, dict, float, float]:
    from danlu.api import train

    runs = Path(os.environ.get("DANLU_BENCH_RUNS", tempfile.mkdtemp(prefix="danlu-audio-")))
    c0, t0 = _cpu(), time.perf_counter()
    result = train(recipe, overrides, runs_dir=runs, data_dir=SHARED / "datasets", progress=False, plots=False)
    return result.run, result.metrics, time.perf_counter() - t0, _cpu() - c0


def _val_accuracy(run: Path) -> float:
    """The last epoch's validation accuracy (what the recipes' settings were chosen on)."""
    import json

    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines() if line]
    return [r["val_accuracy"] for r in rows if "val_accuracy" in r][-1]


def _confusion(run: Path) -> list[str]:
    """The test confusion matrix as markdown rows (true class down, predicted across)."""
    import json

    report = json.loads((run / "report.json").read_text(encoding="utf-8"))
    classes, matrix = report["classes"], report["confusion_matrix"]
    matrix = matrix.get("matrix", matrix) if isinstance(matrix, dict) else matrix
    lines = ["| true ↓ predicted → | " + " | ".join(classes) + " |", "| --- " * (len(classes) + 1) + "|"]
    lines += [f"| {c} | " + " | ".join(str(int(v)) for v in row) + " |" for c, row in zip(classes, matrix, strict=True)]
    return lines


def tones(overrides: list[str]) -> None:
    print("| recipe | classes | val accuracy | test accuracy | speaker 3 | speaker 5 | wall s | CPU s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    confusions = []
    for neutral in ("drop", "class"):
        run, metrics, wall, cpu = _train("mandarin-tones", [f"data.neutral={neutral}", *overrides])
        per = _per_speaker(run)
        print(f"| mandarin-tones {' '.join(overrides)} | {4 if neutral == 'drop' else 5} | {_val_accuracy(run):.4f} | "
              f"{metrics['accuracy']:.4f} | {per.get('3', float('nan')):.4f} | {per.get('5', float('nan')):.4f} | "
              f"{wall:.0f} | {cpu:.0f} |", flush=True)
        confusions.append((f"mandarin-tones, {4 if neutral == 'drop' else 5} classes", _confusion(run)))
    for title, rows in confusions:
        print(f"\n{title}:\n" + "\n".join(rows))
    print()


def cross(overrides: list[str]) -> None:
    print("| recipe | classes | train → test speaker | val accuracy (training voice) | test accuracy | wall s "
          "| CPU s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    confusions = []
    for neutral in ("drop", "class"):
        for a, b in (("3", "5"), ("5", "3")):
            run, metrics, wall, cpu = _train("mandarin-tones-cross-speaker",
                                             [f"data.speaker={a}", f"data.neutral={neutral}", *overrides])
            print(f"| cross-speaker {' '.join(overrides)} | {4 if neutral == 'drop' else 5} | {a} → {b} | "
                  f"{_val_accuracy(run):.4f} | {metrics['accuracy']:.4f} | {wall:.0f} | {cpu:.0f} |", flush=True)
            confusions.append((f"{a} → {b}, {4 if neutral == 'drop' else 5} classes", _confusion(run)))
    for title, rows in confusions:
        print(f"\n{title}:\n" + "\n".join(rows))
    print()


def main(argv: list[str]) -> None:
    what = argv[0] if argv else "all"
    print_header(f"audio benchmark: {what} ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})")
    if what in ("throughput", "all"):
        throughput()
    if what in ("tones", "all"):
        tones(argv[1:])
    if what in ("cross", "all"):
        cross(argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
