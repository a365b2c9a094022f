"""A folder of digit photos of mixed sizes, modes and formats (issue 27's 1,000-photo folder), and its benchmark.

    python benchmarks/digit_photos.py build /tmp/digits1000            # 100 a class from MNIST's training set
    python benchmarks/digit_photos.py run /tmp/digits1000 [--time-limit 10m] [--also-recipes] [--no-default]

Each photo is an MNIST digit (or, without the shared MNIST files, a scikit-learn digit) enlarged to a random
side of 20-160 px (some not square), given a random ink and paper colour in about half the colour files,
a little noise, and saved as PNG, JPEG or BMP in mode L, RGB or P. ``run`` trains ``danlu train FOLDER``
(the recipe chosen from the data) and, with --also-recipes, imagefolder-cnn and imagefolder-efficientnet on
the same folder, and prints test accuracy and time per row, with the machine and its matmul probe.
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

FORMATS = (("PNG", ".png"), ("JPEG", ".jpg"), ("BMP", ".bmp"))
MODES = ("L", "RGB", "P")


def _digits(per_class: int, seed: int, mnist: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 N x H x W with white ink on black, labels) with ``per_class`` of each digit."""
    if mnist is not None and (mnist / "train-images-idx3-ubyte.gz").exists():
        with gzip.open(mnist / "train-images-idx3-ubyte.gz") as f:
            x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
        with gzip.open(mnist / "train-labels-idx1-ubyte.gz") as f:
            y = np.frombuffer(f.read(), np.uint8, offset=8)
    else:
        from sklearn.datasets import load_digits

        d = load_digits()
        x, y = (d.images * (255 / 16)).astype(np.uint8), d.target.astype(np.uint8)
    rng = np.random.default_rng(seed)
    pick = np.concatenate([rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in range(10)])
    return x[pick], y[pick]


def build(out: str | Path, per_class: int = 100, seed: int = 0, mnist: Path | None = None,
          sides: tuple[int, int] = (20, 160)) -> Path:
    """Write ``out``/<digit>/<n>.<png|jpg|bmp>: ``per_class`` photos a digit."""
    from PIL import Image

    out = Path(out)
    x, y = _digits(per_class, seed, mnist)
    rng = np.random.default_rng(seed + 1)
    for i, (img, label) in enumerate(zip(x, y, strict=True)):
        w = int(rng.integers(*sides))
        h = int(w * rng.uniform(0.8, 1.25)) if rng.random() < 0.3 else w
        ink = img.astype(np.float32) / 255.0
        pic = Image.fromarray((ink * 255).astype(np.uint8), "L").resize((w, h), Image.Resampling.BILINEAR)
        a = np.asarray(pic, np.float32) / 255.0
        a = np.clip(a + rng.normal(0, 0.04, a.shape), 0, 1)
        mode = MODES[int(rng.integers(3))]
        if mode == "L":
            dark_on_light = rng.random() < 0.5
            grey = (1 - a) if dark_on_light else a
            im = Image.fromarray((grey * 255).astype(np.uint8), "L")
        else:  # a coloured pen on coloured paper: the digit is in the contrast, not in a channel
            paper = rng.uniform(0.6, 1.0, 3) if rng.random() < 0.5 else rng.uniform(0.0, 0.3, 3)
            pen = 1 - paper + rng.uniform(-0.2, 0.2, 3)
            rgb = paper[None, None, :] * (1 - a[..., None]) + np.clip(pen, 0, 1)[None, None, :] * a[..., None]
            im = Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8), "RGB")
            if mode == "P":
                im = im.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
        fmt, ext = FORMATS[int(rng.integers(3))]
        if fmt == "JPEG" and im.mode == "P":
            im = im.convert("RGB")
        folder = out / str(int(label))
        folder.mkdir(parents=True, exist_ok=True)
        im.save(folder / f"{i:04d}{ext}", fmt, **({"quality": int(rng.integers(60, 95))} if fmt == "JPEG" else {}))
    return out


def _train(args: list[str], runs: Path) -> tuple[dict, float]:
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "danlu", "train", *args, "--runs-dir", str(runs), "--json", "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if done.returncode:
        print(done.stderr[-2000:], file=sys.stderr)
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"}, wall
    return json.loads(done.stdout.strip().splitlines()[-1]), wall


def run(folder: Path, time_limit: str | None, also_recipes: bool, runs: Path, default: bool = True) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.common import matmul_gflops, print_header

    print_header(f"danlu train {folder} (issue 27's digit photo folder)")
    print(f"- matmul probe before: {matmul_gflops():.0f} GFLOP/s")
    rows = [("danlu train FOLDER", [str(folder)])] if default else []
    if time_limit:
        rows.append((f"danlu train FOLDER --time-limit {time_limit}", [str(folder), "--time-limit", time_limit]))
    if also_recipes:
        rows += [(f"imagefolder-{r}", [f"imagefolder-{r}", f"data.root={folder}"]) for r in ("cnn", "efficientnet")]
    print("\n| what | test accuracy | wall (s) | kept |\n| --- | --- | --- | --- |")
    for name, args in rows:
        out, wall = _train(args, runs)
        acc = out.get("metrics", {}).get("accuracy")
        shown = f"{acc:.4f}" if acc is not None else out.get("error", "?")
        print(f"| {name} | {shown} | {wall:.0f} | {out.get('kept', '')} |", flush=True)
        for e in out.get("leaderboard", []):
            print(f"|   {e['candidate']} | val {e.get('val', '—')} test {e.get('test', '—')} | "
                  f"{e.get('seconds', 0):.0f} | {e['status']} |", flush=True)
    print(f"\n- matmul probe after: {matmul_gflops():.0f} GFLOP/s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="verb", required=True)
    b = sub.add_parser("build")
    b.add_argument("out", type=Path)
    b.add_argument("--per-class", type=int, default=100)
    b.add_argument("--seed", type=int, default=0)
    r = sub.add_parser("run")
    r.add_argument("folder", type=Path)
    r.add_argument("--time-limit")
    r.add_argument("--also-recipes", action="store_true")
    r.add_argument("--runs-dir", type=Path, default=Path("runs"))
    r.add_argument("--no-default", action="store_true", help="leave out plain danlu train FOLDER")
    a = p.parse_args()
    if a.verb == "build":
        from benchmarks.common import SHARED

        build(a.out, a.per_class, a.seed, SHARED / "datasets" / "mnist")
        print(f"wrote {a.out}")
    else:
        run(a.folder, a.time_limit, a.also_recipes, a.runs_dir, not a.no_default)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
