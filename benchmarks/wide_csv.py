"""How CSV loading scales with the number of columns: time per column should stay flat (linear reading).

A list membership test in ``data/tabular.py`` once made it quadratic (25,000 columns 7 s, 100,000 88 s).
The baseline printed beside each row is that same membership test on a list, measured in this run, so
the gap between the two columns is what the set saves.

    python benchmarks/wide_csv.py [--columns 10000 25000 50000 100000] [--rows 20]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from benchmarks.common import print_header  # noqa: E402
from danlu.data.tabular import MAX_COLUMNS, load_tabular  # noqa: E402
from danlu.recipe import load_recipe  # noqa: E402


def write_csv(path: Path, columns: int, rows: int) -> None:
    rng = np.random.default_rng(0)
    with path.open("w") as f:
        f.write(",".join(f"c{j}" for j in range(columns)) + ",y\n")
        for i in range(rows):
            f.write(",".join(f"{v:.2f}" for v in rng.normal(size=columns)) + f",{i % 2}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--columns", type=int, nargs="+", default=[10_000, 25_000, 50_000, 100_000])
    parser.add_argument("--rows", type=int, default=20)
    args = parser.parse_args()
    print_header(f"CSV loading vs columns ({args.rows} rows; limit {MAX_COLUMNS:,} columns)")
    print("| columns | load_tabular s | µs per cell | baseline: list membership scan s |")
    print("| --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.columns:
            path = Path(tmp) / f"wide{n}.csv"
            write_csv(path, min(n, MAX_COLUMNS - 1), args.rows)
            recipe = load_recipe("breast-cancer-mlp", ["data.name=csv", f"data.path={path}"])
            t0 = time.perf_counter()
            load_tabular(recipe.data, 0)
            took = time.perf_counter() - t0
            header = [f"c{j}" for j in range(n)]
            t0 = time.perf_counter()
            _ = [h for h in header if h not in header]  # what the old code did, alone
            scan = time.perf_counter() - t0
            print(f"| {n:,} | {took:.2f} | {took / (n * args.rows) * 1e6:.2f} | {scan:.2f} |", flush=True)


if __name__ == "__main__":
    main()
