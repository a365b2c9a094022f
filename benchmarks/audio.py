"""Audio: read + featurize throughput from a warm cache, and the Mandarin tone targets (issue 26).

    python benchmarks/audio.py throughput            # one-second clips/s: cached read, log-mel, pitch track
    python benchmarks/audio.py serve [--run RUN]     # POST /v1/predict of a one-second WAV, 1/8/32 clients
    python benchmarks/audio.py serve --old /tmp/old  # ... alternating with a server run from another checkout
    python benchmarks/audio.py tones [overrides...]  # mandarin-tones: four tones, syllables held out, per speaker
    python benchmarks/audio.py cross [overrides...]  # mandarin-tones-cross-speaker, both directions
    python benchmarks/audio.py all

``tones`` and ``cross`` need gcin-voice under DANLU_DATA (or ../shared/datasets); ``throughput`` and ``serve``
make their own synthetic clips (``serve`` trains a small audiofolder-cnn run on them unless given --run).
Training time is reported as wall seconds and as the process's CPU seconds (user + sys): the development
machines are shared, and the CPU seconds say what the run costs on 2 idle cores better than the wall clock of a
loaded box does.
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
    from benchmarks.common import matmul_gflops

    print(f"\nload average after: {os.getloadavg()[0]:.2f}, matmul probe after: {matmul_gflops():.0f} GFLOP/s; "
          "target: >= 2,000 clips/s for warm read + log-mel on 2 cores\n")


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


def _tone_folder(root: Path, per_class: int, rate: int = 16_000, seconds: float = 1.0) -> Path:
    """Synthetic one-second clips in two classes: rising and falling harmonic glides."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    n = int(rate * seconds)
    for i in range(per_class):
        for label, (a, b) in (("rise", (150, 300)), ("fall", (300, 150))):
            f = np.geomspace(a, b, n) * (1 + 0.1 * rng.standard_normal())
            phase = 2 * np.pi * np.cumsum(f) / rate
            x = 0.3 * sum(np.sin(k * phase) / k for k in range(1, 6)) + 0.003 * rng.standard_normal(n)
            (root / label).mkdir(parents=True, exist_ok=True)
            sf.write(root / label / f"{i}.wav", x.astype(np.float32), rate, subtype="PCM_16")
    return root


def serve(argv: list[str]) -> None:
    """p50/p99 of POST /v1/predict with one one-second 16 kHz WAV (base64 JSON) per request, closed loop of
    1, 8 and 32 clients, ``danlu serve`` in a subprocess (benchmarks/serve.py's harness and client), with the
    server's and the client's CPU time per request. ``--old CHECKOUT`` alternates a server run from another
    danlu source tree (e.g. ``git worktree add /tmp/old COMMIT``) with this one, round by round."""
    import argparse
    import asyncio
    import base64
    import json
    import statistics

    from benchmarks.common import matmul_gflops
    from benchmarks.serve import ROOT, Server, batch_stats, closed_loop, cpu_seconds, percentile, versions

    p = argparse.ArgumentParser(prog="benchmarks/audio.py serve")
    p.add_argument("--run", help="an audio run with one-second clips; default: train audiofolder-cnn on synthetic "
                                 "clips for 2 epochs")
    p.add_argument("--clients", default="1,8,32")
    p.add_argument("--backends", default="torch,onnx")
    p.add_argument("--requests", type=int, default=2000, help="most requests per level")
    p.add_argument("--seconds", type=float, default=10.0, help="longest a level runs")
    p.add_argument("--repeat", type=int, default=1, help="rounds, interleaved; medians are reported")
    p.add_argument("--workers", default="1", help="danlu serve --workers; several (1,2) run one after another")
    p.add_argument("--old", type=Path, help="another danlu checkout whose server runs before this one's, each round")
    args = p.parse_args(argv)
    print(versions(), "\n", flush=True)
    work = Path(tempfile.mkdtemp(prefix="danlu-audio-serve-"))
    clips = _tone_folder(work / "clips", 40)
    if args.run:
        from danlu.runs.store import resolve_run

        run = resolve_run(args.run)
    else:
        from danlu.api import train

        print("training audiofolder-cnn on 80 synthetic one-second clips, 2 epochs (pass --run RUN to skip) ...",
              flush=True)
        run = train("audiofolder-cnn", [f"data.root={clips}", "train.epochs=2"], runs_dir=work / "runs",
                    progress=False, plots=False).run
    bodies = [json.dumps({"inputs": [base64.b64encode(f.read_bytes()).decode()], "top_k": 3}).encode()
              for f in sorted(clips.glob("*/*.wav"))[:64]]
    print(f"run {run}; request body {len(bodies[0]) / 1024:.0f} KiB (one 1 s 16-bit WAV, base64)", flush=True)
    levels = [int(c) for c in args.clients.split(",")]
    checkouts = ([("old", args.old.resolve())] if args.old else []) + [("new" if args.old else "", ROOT)]
    samples: dict[tuple, list[tuple]] = {}
    for rnd in range(1, max(1, args.repeat) + 1):
        for backend in args.backends.split(","):
            for version, checkout, workers in [(v, c, w) for w in args.workers.split(",") for v, c in checkouts]:
                extra = ("--workers", workers) if int(workers) > 1 else ()
                print(f"  round {rnd}: load average {os.getloadavg()[0]:.2f}, matmul probe {matmul_gflops():.0f} "
                      f"GFLOP/s", flush=True)
                server = Server(run, backend, 64, checkout, extra)
                try:
                    server.wait_ready()
                    for clients in levels:
                        before, cpu0, own0 = batch_stats(server.url), cpu_seconds(server.proc.pid), time.process_time()
                        lat, failed, wall = asyncio.run(closed_loop(server.port, bodies, clients, args.requests,
                                                                    args.seconds))
                        own, cpu = time.process_time() - own0, cpu_seconds(server.proc.pid) - cpu0
                        after = batch_stats(server.url)
                        mean_batch = (after[0] - before[0]) / max(1.0, after[1] - before[1])
                        n = max(1, len(lat))
                        sample = (len(lat), failed, len(lat) / wall, percentile(lat, 50) * 1e3,
                                  percentile(lat, 99) * 1e3, mean_batch, cpu / n * 1e6, own / n * 1e6)
                        key = (f"{backend} {version}".strip() + (f" ×{workers}" if extra else ""), clients)
                        samples.setdefault(key, []).append(sample)
                        print(f"  round {rnd} {key[0]:<9} clients {clients:<3} {sample[2]:8.1f} req/s  "
                              f"p50 {sample[3]:6.1f} ms  p99 {sample[4]:6.1f} ms  mean batch {mean_batch:5.1f}  "
                              f"CPU/request server {sample[6]:5.0f} µs client {sample[7]:4.0f} µs  failed {failed}",
                              flush=True)
                finally:
                    server.stop()
    print(f"\nload average after: {os.getloadavg()[0]:.2f}, matmul probe after: {matmul_gflops():.0f} GFLOP/s\n")
    print("| server | clients | requests | failed | req/s | p50 ms | p99 ms | mean batch | server CPU µs/req | "
          "client CPU µs/req |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (name, clients), got in samples.items():
        med = [statistics.median(v[k] for v in got) for k in range(2, 8)]
        print(f"| {name} | {clients} | {sum(v[0] for v in got)} | {sum(v[1] for v in got)} | {med[0]:.1f} | "
              f"{med[1]:.1f} | {med[2]:.1f} | {med[3]:.1f} | {med[4]:.0f} | {med[5]:.0f} |")
    print("\ntarget: p99 < 50 ms at 32 clients for a one-second clip, on 2 cores (the load generator shares them)")


def main(argv: list[str]) -> None:
    what = argv[0] if argv else "all"
    print_header(f"audio benchmark: {what} ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})")
    if what == "serve":
        serve(argv[1:])
        return
    if what in ("throughput", "all"):
        throughput()
    if what in ("tones", "all"):
        tones(argv[1:])
    if what in ("cross", "all"):
        cross(argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
