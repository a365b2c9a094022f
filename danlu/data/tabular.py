"""Tabular data: CSV files and scikit-learn's bundled sets → standardized float tensors.

Numeric columns are standardized with training statistics; text columns are one-hot encoded with
categories seen in training; missing numbers become the training mean. The same ``TabularEncoder``
state lives in schema.json, so prediction encodes new rows exactly as training did.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import numpy as np

from danlu.data.cells import rows_by_name, to_float
from danlu.data.labels import MISSING, MISSING_LABELS, canonical_label
from danlu.data.splits import Splits, split_off, subsample
from danlu.errors import DataError, did_you_mean
from danlu.recipe import DataConfig
from danlu.schema import Schema

# a column is numeric when at most this share of its non-missing training values are not numbers;
# those few are then typos to fix, not categories (one bad cell used to make a column categorical)
MAX_NON_NUMERIC = 0.05
SKLEARN_SETS = {"iris", "breast_cancer", "diabetes", "wine"}
# columns in one CSV: reading is linear in them (100,000 columns x 20 rows: ~5 s here); past this a file is
# more likely a wrong delimiter or a transposed table than features, and schema.json would hold megabytes
MAX_COLUMNS = 100_000


def sniff_delimiter(text: str, path: Path | None = None) -> str:
    """Tab for .tsv/.tab files, else the delimiter among , ; tab | that the first 20,000 characters use."""
    if path is not None and Path(path).suffix.lower() in (".tsv", ".tab"):
        return "\t"
    try:
        return csv.Sniffer().sniff(text[:20000], delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a CSV/TSV file (delimiter sniffed among , ; tab |)."""
    path = Path(path)
    if not path.is_file():
        if path.exists():  # a named pipe would block the read forever
            raise DataError(f"{path} is not a regular file (a folder, named pipe, socket or device)",
                            hint="set data.path to a CSV file")
        raise DataError(f"data file not found: {path}", hint="set data.path to an existing CSV file")
    from danlu.data.parquet import is_parquet, read_parquet

    if is_parquet(path):
        return read_parquet(path)
    from danlu.data.text.files import allow_long_fields, decode_text, field_too_long

    text = decode_text(path.read_bytes(), path)  # UTF-8, or an error that guesses the encoding for iconv
    if not text.strip():
        raise DataError(f"{path} is empty", hint="a CSV needs a header row and at least one data row")
    delim = sniff_delimiter(text, path)
    allow_long_fields()
    reader = csv.reader(io.StringIO(text), delimiter=delim)
    try:
        rows = [r for r in reader if any(c.strip() for c in r)]
    except csv.Error as e:
        if "field limit" in str(e):
            raise field_too_long(path, reader.line_num) from None
        raise DataError(f"{path}, line {reader.line_num}: {e}", hint="check the quoting of that line") from None
    if not rows:
        raise DataError(f"{path} is empty (only empty cells)", hint="a CSV needs a header row and data rows")
    header = [h.strip() for h in rows[0]]
    if len(header) > MAX_COLUMNS:
        raise DataError(f"{path} has {len(header):,} columns; danlu reads at most {MAX_COLUMNS:,}",
                        hint="check the delimiter; or keep the columns you need (cut -d, -f1-1000 or pandas) first")
    body = rows[1:]
    if not body:
        raise DataError(f"{path} has a header but no data rows")
    for i, r in enumerate(body):
        if len(r) != len(header):
            raise DataError(f"{path}, data row {i + 1}: {len(r)} fields, the header has {len(header)}",
                            hint="check the delimiter and quoting of that row")
    # columns with no name and no values: a trailing delimiter on every line (spreadsheet exports)
    keep = [j for j, h in enumerate(header) if h or any(r[j].strip() for r in body)]
    if len(keep) < len(header):
        header, body = [header[j] for j in keep], [[r[j] for j in keep] for r in body]
    seen: dict[str, int] = {}
    for j, h in enumerate(header):
        if h in seen:
            raise DataError(f"{path}: the column name {h!r} appears twice (columns {seen[h] + 1} and {j + 1})",
                            hint="rename one of them in the header row, so each column can be named")
        seen[h] = j
    return header, body


class TabularEncoder:
    """Turns rows (lists in column order or dicts by name) into the model's float feature vectors."""

    def __init__(self, features: list[str], categories: dict[str, list[str]], mean: list[float],
                 std: list[float]):
        self.features, self.categories = features, categories
        self.mean, self.std = np.asarray(mean, np.float32), np.asarray(std, np.float32)

    @classmethod
    def fit(cls, columns: dict[str, list[Any]], train_idx: np.ndarray) -> TabularEncoder:
        features = list(columns)
        categories = {}
        for name, values in columns.items():
            floats = [to_float(values[i]) for i in train_idx]
            bad = sum(f is None for f in floats)
            present = sum(f is not None and not math.isnan(f) for f in floats) + bad
            if bad and bad > MAX_NON_NUMERIC * present:
                cats = sorted({str(values[i]).strip() for i in train_idx})
                categories[name] = cats
        enc = cls(features, categories, [], [])
        x = enc._encode_raw(columns, "data row")
        train = x[train_idx]
        mean = np.nanmean(train, 0) if len(train) else np.zeros(x.shape[1])
        std = np.nanstd(train, 0) if len(train) else np.ones(x.shape[1])
        mean = np.where(np.isnan(mean), 0.0, mean)
        std = np.where(~np.isfinite(std) | (std < 1e-8), 1.0, std)
        # one-hot columns stay 0/1
        for j in enc._onehot_columns():
            mean[j], std[j] = 0.0, 1.0
        enc.mean, enc.std = mean.astype(np.float32), std.astype(np.float32)
        return enc

    def _column_features(self) -> list[str]:
        """The feature each encoded column comes from (a categorical feature spans one column per category)."""
        return [name for name in self.features for _ in range(len(self.categories.get(name, ())) or 1)]

    def column_features(self) -> list[str]:
        return self._column_features()

    def _onehot_columns(self) -> list[int]:
        return [j for j, name in enumerate(self._column_features()) if name in self.categories]

    @property
    def width(self) -> int:
        return sum(len(self.categories.get(n, ())) or 1 for n in self.features)

    def _encode_raw(self, columns: dict[str, list[Any]], where: str = "row", base: int = 1) -> np.ndarray:
        n = len(next(iter(columns.values()))) if columns else 0
        out = np.zeros((n, self.width), np.float32)
        j = 0
        for name in self.features:
            values = columns[name]
            if name in self.categories:
                cats = self.categories[name]
                lookup = {c: k for k, c in enumerate(cats)}
                for i, v in enumerate(values):
                    k = lookup.get(str(v).strip())
                    if k is not None:  # unseen category → all zeros
                        out[i, j + k] = 1.0
                j += len(cats)
            else:
                for i, v in enumerate(values):
                    f = to_float(v)
                    if f is None or math.isinf(f):
                        what = "is not a number" if f is None else "is not a finite number"
                        raise DataError(f"column '{name}', {where} {i + base}: '{v}' {what}",
                                        hint="a numeric column holds numbers; leave a cell empty (or NA) "
                                             "when the value is missing")
                    out[i, j] = f
                j += 1
        return out

    def transform(self, columns: dict[str, list[Any]], where: str = "row", base: int = 1) -> np.ndarray:
        """Encoded, standardized features; errors name a row as ``where`` and its index from ``base``."""
        x = self._encode_raw(columns, where, base)
        with np.errstate(over="ignore", invalid="ignore"):
            x = (x - self.mean) / self.std
        too_big = np.isinf(x)
        if too_big.any():
            i, j = (int(k) for k in np.argwhere(too_big)[0])
            feature = self._column_features()[j]
            raise DataError(f"{where} {i + base}, column '{feature}': the value is too large for the model "
                            "(it overflows float32 after standardization)",
                            hint="send values in the range the model was trained on")
        return np.nan_to_num(x, nan=0.0)  # missing → the training mean

    def rows_to_columns(self, rows: list[Any], where: str = "input") -> dict[str, list[Any]]:
        """Rows as lists (schema order) or dicts (by column name) → columns by name."""
        return rows_by_name(self.features, rows, where)

    def schema_fields(self) -> dict[str, Any]:
        return {"features": self.features, "categories": self.categories,
                "mean": self.mean.tolist(), "std": self.std.tolist(), "input_shape": [self.width]}

    @classmethod
    def from_schema(cls, schema: Schema) -> TabularEncoder:
        return cls(schema.features or [], schema.categories, schema.mean or [], schema.std or [])


def encoder_for(schema: Schema) -> Any:
    """The encoder a run's schema.json describes: the column plan (``table``), or the one-hot encoder of
    runs from before it (and of the models that keep it)."""
    if schema.table:
        from danlu.data.columns import ColumnPlan

        return ColumnPlan(schema.table)
    return TabularEncoder.from_schema(schema)


def _sklearn_columns(name: str) -> tuple[dict[str, list[Any]], np.ndarray, list[str] | None, str]:
    from sklearn import datasets

    loader = {"iris": datasets.load_iris, "breast_cancer": datasets.load_breast_cancer,
              "diabetes": datasets.load_diabetes, "wine": datasets.load_wine}[name]
    bunch = loader()
    names = [str(f) for f in bunch.feature_names]
    columns = {n: bunch.data[:, j].tolist() for j, n in enumerate(names)}
    classes = [str(c) for c in bunch.target_names] if hasattr(bunch, "target_names") else None
    task = "regression" if name == "diabetes" else "classification"
    return columns, np.asarray(bunch.target), classes, task


def _csv_columns(cfg: DataConfig) -> tuple[dict[str, list[Any]], list[str], str, str]:
    if cfg.path is None:
        raise DataError("data.name=csv needs data.path", hint="e.g. danlu train my.yaml data.path=houses.csv")
    header, rows = read_csv(cfg.path)
    target = cfg.target or header[-1]
    if target not in header:
        raise DataError(f"target column '{target}' not in {cfg.path}",
                        hint=f"{did_you_mean(target, header)}columns: {', '.join(header)}")
    features = cfg.features or [h for h in header if h != target]
    if cfg.exclude:
        unknown = [c for c in cfg.exclude if c not in set(header)]
        if unknown:
            raise DataError(f"data.exclude names column(s) {', '.join(unknown)}, not in {cfg.path}",
                            hint=f"{did_you_mean(unknown[0], header)}columns: {', '.join(header)}")
        features = [f for f in features if f not in set(cfg.exclude)]
        if not features:
            raise DataError("data.exclude leaves no feature column", hint="exclude fewer columns")
    columns_in_file = set(header)  # a set: a list here made reading quadratic (100,000 columns: 88 s)
    unknown = [f for f in features if f not in columns_in_file]
    if unknown:
        raise DataError(f"feature column(s) {', '.join(unknown)} not in {cfg.path}",
                        hint=f"columns: {', '.join(header)}")
    if target in features:
        raise DataError(f"column '{target}' is both the target and a feature", hint="remove it from data.features")
    pos = {h: k for k, h in enumerate(header)}
    columns = {f: [r[pos[f]] for r in rows] for f in features}
    y_raw = [r[pos[target]].strip() for r in rows]
    return columns, y_raw, target, str(cfg.path)


def _infer_task(y_raw: list[str], task: str) -> str:
    if task != "auto":
        return task
    floats = [to_float(v) for v in y_raw]
    if any(f is None for f in floats):
        return "classification"
    vals = {f for f in floats if not math.isnan(f)}
    integral = all(float(v).is_integer() for v in vals)
    return "classification" if integral and len(vals) <= 20 else "regression"


def load_tabular(cfg: DataConfig, seed: int, hints: dict | None = None) -> tuple[Splits, Schema]:
    import torch

    from danlu.data.tensors import TensorSplit

    notes: list[str] = []
    if cfg.name in SKLEARN_SETS:
        columns, y_arr, classes, task = _sklearn_columns(cfg.name)
        target_name, source = "target", f"scikit-learn {cfg.name}"
        if classes is not None:
            classes = [str(c) for c in classes]
        y_raw = y_arr.tolist()
    else:
        columns, y_raw, target_name, source = _csv_columns(cfg)
        task = _infer_task(y_raw, cfg.task)
        classes = None
    task = cfg.task if cfg.task != "auto" else task
    # target → ids or floats, dropping rows with no target
    absent = MISSING_LABELS if task == "classification" else MISSING  # "none" can be a class, not a number
    keep = [i for i, v in enumerate(y_raw) if str(v).strip().lower() not in absent]
    if len(keep) < len(y_raw):
        notes.append(f"skipped {len(y_raw) - len(keep)} rows with no target value")
    if not keep:
        raise DataError(f"{source}: the target column '{target_name}' has no values",
                        hint="set data.target to the column to predict")
    if task == "classification":
        labels = [canonical_label(str(y_raw[i]).strip()) for i in keep]
        if classes is None:
            classes = sorted(set(labels), key=lambda s: (to_float(s) is None, to_float(s) or 0.0, s))
        else:
            labels = [classes[int(float(v))] for v in labels]
        lookup = {c: k for k, c in enumerate(classes)}
        y = np.array([lookup[v] for v in labels], np.int64)
        if len(classes) < 2:
            raise DataError(f"{source}: the target '{target_name}' has only one class ({classes[0]!r})",
                            hint="classification needs at least two classes; check data.target")
        if len(classes) > 20 and len(classes) > len(labels) / 2:
            notes.append(f"the target '{target_name}' has {len(classes)} classes for {len(labels)} rows, most with "
                         "a single row: if it is a quantity, set data.task=regression")
    else:
        ys = [to_float(y_raw[i]) for i in keep]
        if any(v is None for v in ys):
            bad = next(str(y_raw[i]) for i, v in zip(keep, ys, strict=True) if v is None)
            raise DataError(f"{source}: regression target '{target_name}' has a non-number '{bad}'",
                            hint="set data.task=classification, or clean the column")
        y = np.array(ys, np.float32).reshape(-1, 1)
        if not np.isfinite(y).all():
            row = keep[int(np.argmax(~np.isfinite(y[:, 0])))]
            raise DataError(f"{source}: regression target '{target_name}' is not a finite number in data row "
                            f"{row + 1} ('{y_raw[row]}')", hint="fix or remove that row")
    if cfg.name not in SKLEARN_SETS:  # one value throughout, or an ID: refused before any split
        from danlu.data.table_checks import check_target

        check_target(y_raw, keep, task, target_name, source)
    kept = np.asarray(keep, np.int64)  # file data row (0-based) of each row with a target
    strat = task == "classification"
    rest, test_idx = split_off(y if strat else np.zeros(len(y)), cfg.test_fraction, seed, strat)
    tr_rel, val_rel = split_off(y[rest] if strat else np.zeros(len(rest)), cfg.val_fraction, seed + 1, strat)
    train_idx, val_idx = rest[tr_rel], rest[val_rel]
    if cfg.limit_train:
        strata = y[train_idx] if strat else np.zeros(len(train_idx))
        train_idx = train_idx[subsample(strata, cfg.limit_train, seed, strat)]
    if len(train_idx) == 0 or len(test_idx) == 0:
        raise DataError(f"{source}: too few rows ({len(y)}) to split into train/val/test",
                        hint="add rows, or lower data.test_fraction / data.val_fraction")
    plan = (hints or {}).get("table") == "columns"  # the column plan (danlu/data/columns.py) for the models that ask
    if cfg.name not in SKLEARN_SETS:
        from danlu.data.table_checks import check_leaks

        if cfg.check_leaks:
            check_leaks(columns, y, task, target_name, source, kept[train_idx], train_idx, y_raw)
    try:
        if plan:
            from danlu.data.columns import ColumnPlan

            enc = ColumnPlan.fit(columns, kept[train_idx])
        else:
            enc = TabularEncoder.fit(columns, kept[train_idx])
        x = enc.transform(columns, where="data row")[kept]
    except DataError as e:
        raise DataError(f"{source}: {e.message}", hint=e.hint) from None
    if plan:
        notes.extend(enc.notes())
        if enc.width == 0:
            raise DataError(f"{source}: no column is left to learn from (see the notes: IDs, constants and empty "
                            "columns are left out)", hint="check data.target, data.features and data.exclude")
    for name, cats in getattr(enc, "categories", {}).items():
        if len(cats) > 20 and len(cats) > len(train_idx) / 2:
            notes.append(f"column '{name}' is read as {len(cats)} text categories, most seen once: if it holds "
                         "numbers, clean its non-numeric cells; if it is an ID, leave it out with data.exclude=[...] "
                         "(or list the others in data.features)")
    schema = Schema(kind="tabular", task=task, source=source, classes=classes, **enc.schema_fields())
    if task == "regression":
        tm, ts = float(y[train_idx].mean()), float(y[train_idx].std()) or 1.0
        schema.targets, schema.target_mean, schema.target_std = [target_name], [tm], [ts]
    xt = torch.from_numpy(x)
    yt = torch.from_numpy(y)

    def part(idx: np.ndarray) -> TensorSplit:
        return TensorSplit(xt[idx], yt[idx], [f"row {int(kept[i]) + 1}" for i in idx.tolist()])

    return Splits(part(train_idx), part(val_idx), part(test_idx), notes), schema
