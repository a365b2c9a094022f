"""danlu lightgbm's round schedule side by side on tables of benchmarks/tables.py, in one process, alternating:
the auto schedule (lr 0.1, up to 1000 rounds, no refit from 20,000 training rows; as before below that) with
LightGBM on the cores the load average leaves idle, the schedule before 2026-12-07 (lr 0.05, up to 2000 rounds,
refit on train + val: set explicitly), the auto schedule on every core (2 here: the threading before), and
LightGBM's defaults on the same split. Whole danlu runs (read, fit, evaluate, write the run folder; no figures).

    python benchmarks/lightgbm_schedule.py --only diamonds --repeat 1
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import print_header  # noqa: E402
from benchmarks.tables import TABLES, extract, run_baselines, run_danlu, split_rows  # noqa: E402

SCHEDULES = {
    "auto (lr 0.1 from 20,000 rows; threads: the idle cores)": [],
    "before's schedule (lr 0.05, 2000, refit), idle cores": ["model.learning_rate=0.05", "model.n_estimators=2000",
                                                             "model.refit=true"],
    "auto, 2 threads (before's threading: every core)": ["train.threads=2"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", default=["diamonds"])
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--wheels", type=Path, default=Path.home() / ".cache" / "danlu" / "wheels")
    args = ap.parse_args()
    print_header("lightgbm schedule: before vs auto vs LightGBM default")
    lines = ["| table | schedule | metric | rounds (best / run) | time (s) per repeat |",
             "| --- | --- | --- | --- | --- |"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for table in [t for t in TABLES if t.name in args.only]:
            path = extract(table, args.wheels, tmp)
            rows = split_rows(path, table)
            got: dict[str, list] = {}
            for _ in range(args.repeat):
                for name, extra in SCHEDULES.items():
                    metric, wall, run = run_danlu(path, table, "table-lightgbm", tmp / "runs", extra)
                    status = json.loads((Path(run) / "status.json").read_text())
                    ran = json.loads((Path(run) / "metrics.jsonl").read_text().splitlines()[-1])["epoch"]
                    got.setdefault(name, []).append((metric, wall, status["best_epoch"], ran))
                base = run_baselines(path, table, rows)["LightGBM default"]
                got.setdefault("LightGBM default (100 at 0.1, train + val)", []).append((base[0], base[1], 100, None))
            for name, runs in got.items():
                times = " / ".join(f"{r[1]:.1f}" for r in runs)
                rounds = f"{runs[0][2]}" + ("" if runs[0][3] is None else f" / {runs[0][3]}")
                lines.append(f"| {table.name} | {name} | {runs[0][0]:.4f} | {rounds} | {times} |")
                print(lines[-1], flush=True)
    print("\n" + "\n".join(lines))
    print_header("after")


if __name__ == "__main__":
    main()
