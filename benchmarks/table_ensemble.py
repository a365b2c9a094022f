"""`danlu train TABLE --time-limit` on a generated table whose target mixes a smooth part (which a net fits
well) and steps (which trees fit well), so a blend of the two can win: prints the leaderboard and the kept run.

    python benchmarks/table_ensemble.py --rows 3000 --time-limit 4m
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import print_header  # noqa: E402


def write_table(path: Path, rows: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["a", "b", "c", "d", "city", "target"])
        for _ in range(rows):
            a, b, c, d = rng.normal(size=4)
            city = rng.choice(["paris", "lyon", "nice", "lille", "brest"])
            y = (2 * np.sin(2 * a) + a * b + 1.5 * (c > 0.3) - (d < -0.5) + {"paris": 1, "nice": 0.5}.get(city, 0)
                 + rng.normal(0, 0.5))
            w.writerow([f"{a:.4f}", "" if rng.random() < 0.05 else f"{b:.4f}", f"{c:.4f}", f"{d:.4f}", city,
                        f"{y:.4f}"])
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=3000)
    ap.add_argument("--time-limit", default="4m")
    args = ap.parse_args()
    print_header(f"table ensemble: danlu train TABLE --time-limit {args.time_limit}")
    from danlu.autorecipe.run import _leaderboard_md, parse_duration, train_auto

    with tempfile.TemporaryDirectory() as tmp:
        path = write_table(Path(tmp) / "generated.csv", args.rows)
        out = train_auto(path, time_limit=parse_duration(args.time_limit), runs_dir=Path(tmp) / "runs",
                         progress=False)
        print(f"kept: {out.kept}  test {out.metric} {out.result.metrics.get(out.metric):.4f}\n")
        print(_leaderboard_md(out))
    print_header("after")


if __name__ == "__main__":
    main()
