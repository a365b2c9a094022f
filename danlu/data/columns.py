"""What each column of a table is, and how it becomes model input: the column plan.

A column is read from its training values as one of: numbers, categories, free text, dates, an ID, a
constant, or empty. The plan (kept in schema.json as ``table``) then encodes rows into one float matrix:

- numbers → a quantile transform to a standard normal (robust to skew and outliers), a missing value → 0
  plus a 0/1 "was missing" column when training had any;
- dates → year, month, day, weekday (hour when there are times) and days since 1970, each as a number;
- categories → an integer code (0 missing, 1 rare or unseen, 2.. the values seen at least ``MIN_COUNT``
  times), compared case- and space-insensitively ("Paris" = " paris"), for a learned embedding whose size
  grows with the number of values; boosted trees split on the codes as categories;
- free text (many distinct values of several words, a job title or a review) → its frequent values as a
  category, plus its tokens (danlu's word tokenizer, or characters for Chinese) hashed into ``HASH_BUCKETS``
  counts, log(1 + count) each;
- IDs (every value distinct), constants and empty columns are left out, each with a note.

Layout of a row: [numbers and date parts | missing flags | hashed text | category codes].
"""

from __future__ import annotations

import math
import re
import zlib
from datetime import datetime
from typing import Any

import numpy as np

from danlu.data.cells import is_missing, rows_by_name, to_float
from danlu.errors import DataError

PLAN_VERSION = 1
MIN_COUNT = 3  # a category value seen fewer times in training is pooled with the unseen ones
MAX_NON_NUMERIC = 0.05  # as in tabular.py: a few non-numbers in a numeric column are typos, not categories
DATE_SHARE = 0.9  # a column is dates when this share of its values parse with one format
QUANTILES = 256
HASH_BUCKETS = 32
TEXT_CATEGORIES = 200  # the most frequent values of a text column kept as its category
MAX_EMBED = 32
DATE_FORMATS = ("iso", "%m/%d/%Y", "%d/%m/%Y", "%Y/%m/%d", "%d.%m.%Y", "%d-%m-%Y", "%m-%d-%Y", "%b %d, %Y",
                "%d %b %Y", "%Y%m%d")
_DATEISH = re.compile(r"^\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$"
                      r"|^[A-Za-z]{3,9}\.? \d{1,2},? \d{4}$|^\d{1,2} [A-Za-z]{3,9}\.? \d{4}$")
_ID_NAME = re.compile(r"(^|[_\W])(id|uuid|guid|key|index)$|^(id|row|index|unnamed: ?0)([_\W]|$)", re.IGNORECASE)
DATE_PARTS = ("year", "month", "day", "weekday", "days")


def embed_size(cardinality: int) -> int:
    """fastai's rule of thumb (1.6 · n^0.56), capped: 5 values → 4, 100 → 21, 10,000 → 32."""
    return int(max(2, min(MAX_EMBED, round(1.6 * cardinality ** 0.56))))


def canonical(value: Any) -> str:
    """A category value as compared: spaces collapsed, case folded ("Paris " = "paris")."""
    return " ".join(str(value).split()).casefold()


def _float(v: Any) -> float | None:
    return to_float(v)


def _missing(v: Any) -> bool:
    return is_missing(v)


def parse_date(value: str, fmt: str) -> datetime | None:
    s = value.strip()
    try:
        if fmt == "iso":
            d = datetime.fromisoformat(s.replace("Z", "+00:00"))
        else:
            d = datetime.strptime(s, fmt)
    except ValueError:
        return None
    return d.replace(tzinfo=None) if d.tzinfo else d


def _date_format(values: list[str]) -> str | None:
    sample = values[:: max(1, len(values) // 500)][:500]
    if not sample or sum(bool(_DATEISH.match(v.strip())) for v in sample) < DATE_SHARE * len(sample):
        return None
    for fmt in DATE_FORMATS:
        if sum(parse_date(v, fmt) is not None for v in sample) >= DATE_SHARE * len(sample):
            return fmt
    return None


def _quantiles(values: np.ndarray) -> list[float]:
    q = np.quantile(values, np.linspace(0, 1, QUANTILES)) if len(values) else np.zeros(1)
    return [float(v) for v in np.unique(q)]


def _tokens_per_value(values: list[str]) -> float:
    sample = values[:: max(1, len(values) // 1000)][:1000]
    return float(np.mean([len(v.split()) for v in sample])) if sample else 0.0


def detect(name: str, values: list[Any]) -> dict[str, Any]:
    """The kind of one column from its training values, with what encoding it needs fitted."""
    present = [str(v).strip() for v in values if not _missing(v)]
    n = len(present)
    if n == 0:
        return {"name": name, "kind": "empty"}
    floats = [_float(v) for v in present]
    bad = sum(f is None for f in floats)
    if bad <= MAX_NON_NUMERIC * n:
        nums = np.array([f for f in floats if f is not None and math.isfinite(f)], np.float64)
        distinct = np.unique(nums)
        if len(distinct) <= 1:
            return {"name": name, "kind": "constant"}
        integral = bool(np.all(np.floor(distinct) == distinct))
        if integral and len(distinct) == len(nums) >= 20 and (
                _ID_NAME.search(name) or distinct[-1] - distinct[0] + 1 <= 1.1 * len(distinct)):
            return {"name": name, "kind": "id", "why": f"{len(distinct)} distinct whole numbers, one per row"}
        return {"name": name, "kind": "numeric", "quantiles": _quantiles(nums),
                "missing": n < len(values) or bad > 0 or len(nums) < n - bad}
    fmt = _date_format(present)
    if fmt is not None:
        dates = [parse_date(v, fmt) for v in present]
        ok = [d for d in dates if d is not None]
        has_time = any(d.hour or d.minute for d in ok)
        parts = {p: _quantiles(np.array([date_part(d, p) for d in ok], np.float64))
                 for p in date_parts(has_time)}
        return {"name": name, "kind": "date", "format": fmt, "time": has_time, "quantiles": parts,
                "missing": n < len(values) or len(ok) < n}
    canon = [canonical(v) for v in present]
    counts: dict[str, int] = {}
    for c in canon:
        counts[c] = counts.get(c, 0) + 1
    unique = len(counts)
    if unique == 1:
        return {"name": name, "kind": "constant"}
    from danlu.data.text.tokenizers import cjk_fraction

    # several words, or (Chinese, written without spaces) a dozen characters: text, not a code
    if cjk_fraction(present) >= 0.3:
        long_values = bool(np.mean([len(v) for v in present[:1000]]) >= 12)
    else:
        long_values = _tokens_per_value(present) >= 1.5
    if unique >= 0.9 * n and n >= 20 and not long_values:
        return {"name": name, "kind": "id", "why": f"{unique} distinct values in {n} rows"}
    if unique > max(50, 0.05 * n) and long_values:
        from danlu.data.text.tokenizers import choose_tokenizer

        frequent = sorted((c for c, k in counts.items() if k >= MIN_COUNT), key=lambda c: (-counts[c], c))
        return {"name": name, "kind": "text", "tokenizer": choose_tokenizer(present), "buckets": HASH_BUCKETS,
                "values": frequent[:TEXT_CATEGORIES], "distinct": unique}
    kept = sorted(c for c, k in counts.items() if k >= MIN_COUNT)
    return {"name": name, "kind": "category", "values": kept, "pooled": unique - len(kept)}


def date_parts(has_time: bool) -> tuple[str, ...]:
    return (*DATE_PARTS[:4], "hour", "days") if has_time else DATE_PARTS


def date_part(d: datetime, part: str) -> float:
    if part == "days":
        return (d - datetime(1970, 1, 1)).total_seconds() / 86400.0
    if part == "weekday":
        return float(d.weekday())
    return float(getattr(d, part))


def _gaussian(values: np.ndarray, quantiles: list[float]) -> np.ndarray:
    """The quantile transform: each value's place among the training values, as a standard normal score."""
    from scipy.special import ndtri

    q = np.asarray(quantiles, np.float64)
    if len(q) == 1:
        return np.zeros_like(values)
    u = np.interp(values, q, np.linspace(0.0, 1.0, len(q)))
    return ndtri(np.clip(u, 1e-3, 1 - 1e-3))


def _hash_bucket(token: str, buckets: int) -> int:
    return zlib.crc32(token.encode("utf-8")) % buckets  # stable across processes, unlike hash()


class ColumnPlan:
    """Encodes rows as the plan says; the plan is plain JSON (schema.json's ``table``)."""

    def __init__(self, plan: dict[str, Any]):
        self.plan = plan
        self.columns: list[dict[str, Any]] = plan["columns"]
        self.features: list[str] = plan["features"]  # every column a row must give, used or not
        self._tokenizers: dict[str, Any] = {}

    # ------------------------------------------------------------ fitting

    @classmethod
    def fit(cls, columns: dict[str, list[Any]], train_idx: np.ndarray) -> ColumnPlan:
        specs = [detect(name, [values[i] for i in train_idx]) for name, values in columns.items()]
        numeric, flags, hashed, codes, cards = [], [], [], [], []
        for s in specs:
            if s["kind"] == "numeric":
                numeric.append(s["name"])
            elif s["kind"] == "date":
                numeric += [f"{s['name']}:{p}" for p in date_parts(s["time"])]
            if s["kind"] in ("numeric", "date") and s["missing"]:
                flags.append(f"{s['name']}:missing")
            if s["kind"] == "text":
                hashed += [f"{s['name']}:hash{b}" for b in range(s["buckets"])]
            if s["kind"] in ("category", "text"):
                codes.append(s["name"])
                cards.append(len(s["values"]) + 2)
        start = len(numeric) + len(flags) + len(hashed)
        plan = {"version": PLAN_VERSION, "features": list(columns), "columns": specs,
                "inputs": [*numeric, *flags, *hashed, *codes],
                "code_columns": list(range(start, start + len(codes))), "cardinalities": cards,
                "embed_dims": [embed_size(c) for c in cards]}
        return cls(plan)

    @property
    def width(self) -> int:
        return len(self.plan["inputs"])

    def notes(self) -> list[str]:
        """One line per column that is not read as plain numbers: what danlu made of it."""
        out = []
        for s, dim in zip((s for s in self.columns if s["kind"] in ("category", "text")), self.plan["embed_dims"],
                          strict=True):
            name = s["name"]
            if s["kind"] == "text":
                tok = "characters (Chinese)" if s["tokenizer"] == "char" else "words"
                out.append(f"column '{name}': free text ({s['distinct']} distinct values), read as text: its "
                           f"{len(s['values'])} most frequent values as a category (embedding {dim}) and its {tok} "
                           f"hashed into {s['buckets']} counts")
            elif s["pooled"]:
                out.append(f"column '{name}': {len(s['values'])} categories (embedding {dim}); {s['pooled']} values "
                           f"seen fewer than {MIN_COUNT} times pooled with unseen ones")
        for s in self.columns:
            if s["kind"] == "date":
                out.append(f"column '{s['name']}': dates ({s['format']}), split into "
                           f"{', '.join(date_parts(s['time']))}")
            elif s["kind"] == "id":
                out.append(f"column '{s['name']}' looks like an ID ({s['why']}) and is left out; "
                           "if it is a quantity, clean it or name it in data.features")
            elif s["kind"] in ("constant", "empty"):
                out.append(f"column '{s['name']}' is {'one value throughout' if s['kind'] == 'constant' else 'empty'}"
                           " in the training rows and is left out")
        return out

    # ------------------------------------------------------------ encoding

    def transform(self, columns: dict[str, list[Any]], where: str = "row", base: int = 1) -> np.ndarray:
        """Rows (columns by name) → float32 [N, width]; errors name the row as ``where`` and its index from ``base``."""
        n = len(next(iter(columns.values()))) if columns else 0
        numeric, flags, hashed, codes = [], [], [], []
        for s in self.columns:
            kind, values = s["kind"], columns.get(s["name"], [None] * n)
            if kind == "numeric":
                raw = self._numbers(s["name"], values, where, base)
                numeric.append(np.where(np.isnan(raw), 0.0, _gaussian(np.nan_to_num(raw), s["quantiles"])))
                if s["missing"]:
                    flags.append(np.isnan(raw).astype(np.float64))
            elif kind == "date":
                dates = [None if _missing(v) else parse_date(str(v), s["format"]) for v in values]
                absent = np.array([d is None for d in dates])
                for p in date_parts(s["time"]):
                    raw = np.array([date_part(d, p) if d is not None else 0.0 for d in dates], np.float64)
                    numeric.append(np.where(absent, 0.0, _gaussian(raw, s["quantiles"][p])))
                if s["missing"]:
                    flags.append(absent.astype(np.float64))
            elif kind in ("category", "text"):
                lookup = {c: k + 2 for k, c in enumerate(s["values"])}
                codes.append(np.array([0 if _missing(v) else lookup.get(canonical(v), 1) for v in values],
                                      np.float64))
                if kind == "text":
                    hashed.append(self._hashed(s, values, n))
        blocks = [np.stack(b, 1) for b in (numeric, flags) if b]
        blocks += hashed
        if codes:
            blocks.append(np.stack(codes, 1))
        x = np.concatenate(blocks, 1) if blocks else np.zeros((n, 0))
        return x.astype(np.float32)

    def _numbers(self, name: str, values: list[Any], where: str, base: int) -> np.ndarray:
        out = np.empty(len(values), np.float64)
        for i, v in enumerate(values):
            f = _float(v)
            if f is None or math.isinf(f):
                what = "is not a number" if f is None else "is not a finite number"
                raise DataError(f"column '{name}', {where} {i + base}: '{v}' {what}",
                                hint="a numeric column holds numbers; leave a cell empty (or NA) when the value is "
                                     "missing")
            out[i] = f
        return out

    def _hashed(self, spec: dict[str, Any], values: list[Any], n: int) -> np.ndarray:
        from danlu.data.text.tokenizers import make_tokenizer

        tok = self._tokenizers.get(spec["name"])
        if tok is None:
            tok = self._tokenizers[spec["name"]] = make_tokenizer(spec["tokenizer"])
        counts = np.zeros((n, spec["buckets"]), np.float64)
        for i, v in enumerate(values):
            if not _missing(v):
                for t in tok.tokenize(str(v)):
                    counts[i, _hash_bucket(t, spec["buckets"])] += 1
        return np.log1p(counts)

    def rows_to_columns(self, rows: list[Any], where: str = "input") -> dict[str, list[Any]]:
        return rows_by_name(self.features, rows, where)

    def column_features(self) -> list[str]:
        """The table column each input comes from ("born:year" and "born:missing" → "born")."""
        return [name.rsplit(":", 1)[0] if ":" in name and name.rsplit(":", 1)[0] in self._names else name
                for name in self.plan["inputs"]]

    @property
    def _names(self) -> set[str]:
        return set(self.features)

    def schema_fields(self) -> dict[str, Any]:
        return {"features": self.features, "categories": {}, "mean": None, "std": None, "input_shape": [self.width],
                "table": self.plan}
