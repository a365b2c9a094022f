"""Who interacted with what: a user-item table read from CSV, TSV or Parquet into integer-indexed arrays.

Ids may be any strings; they are mapped to dense indices in first-seen order and the maps are saved in the
run folder as JSON (``id_maps.json``), so a run alone can turn ``--user 42`` back into a row. Bad tables get
a DataError that names the file, the column and what to change; nothing here imports torch.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from danlu.errors import DataError

# column names tried, in order, when the recipe leaves a column on "auto"
COMMON_NAMES: dict[str, tuple[str, ...]] = {
    "user": ("user", "userid", "uid", "customer", "customerid", "visitor", "visitorid", "client", "clientid",
             "member", "memberid", "account", "accountid", "buyer", "reader", "listener", "用户", "用户id", "客户",
             "会员"),
    "item": ("item", "itemid", "iid", "movieid", "movie", "product", "productid", "sku", "article", "articleid",
             "book", "bookid", "isbn", "asin", "song", "songid", "track", "trackid", "物品", "商品", "商品id",
             "电影"),
    "rating": ("rating", "score", "stars", "value", "weight", "评分"),
    "time": ("timestamp", "time", "ts", "datetime", "date", "when", "event_time", "created_at", "时间"),
}
ITEM_TABLE_NAMES: dict[str, tuple[str, ...]] = {
    "title": ("title", "name", "item_name", "movie_title", "标题", "名称"),
    "genres": ("genres", "genre", "category", "categories", "tags", "类别"),
    "year": ("year", "release_year", "年份"),
}


@dataclass
class IdMap:
    """Original id (a string) ↔ dense index."""

    ids: list[str]
    index: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.index:
            self.index = {s: i for i, s in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)

    def get(self, raw: Any) -> int | None:
        return self.index.get(_norm_id(raw))


@dataclass
class Interactions:
    """The table, indexed: one row per distinct (user, item), chronological order not assumed."""

    users: np.ndarray  # int64 user index
    items: np.ndarray  # int64 item index
    ratings: np.ndarray | None  # float32 (None: implicit-only data)
    times: np.ndarray | None  # int64 seconds (None: no timestamps)
    user_map: IdMap
    item_map: IdMap
    source: str = ""
    notes: list[str] = field(default_factory=list)
    item_info: dict[str, list[Any]] = field(default_factory=dict)  # title / genres / year per item index

    @property
    def n_users(self) -> int:
        return len(self.user_map)

    @property
    def n_items(self) -> int:
        return len(self.item_map)

    def __len__(self) -> int:
        return len(self.users)

    def id_maps_json(self) -> str:
        return json.dumps({"users": self.user_map.ids, "items": self.item_map.ids}, ensure_ascii=False)


def _norm_id(raw: Any) -> str:
    """One spelling per id: "42", 42 and 42.0 are the same user (CSV and Parquet disagree on types)."""
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    s = str(raw).strip()
    if re.fullmatch(r"-?\d+\.0+", s):
        s = s.split(".")[0]
    return s


def load_id_maps(path: Path) -> tuple[IdMap, IdMap]:
    """id_maps.json of a run, checked: two lists of distinct strings."""
    from danlu.errors import RunError
    from danlu.runs.files import read_json_file

    try:
        d = read_json_file(path, within=Path(path).parent)  # a regular, bounded file inside the run folder
        users, items = d["users"], d["items"]
        if not all(isinstance(x, str) for x in users + items):
            raise ValueError("ids must be strings")
        if len(set(users)) != len(users) or len(set(items)) != len(items):
            raise ValueError("an id is listed twice")
    except FileNotFoundError:
        raise RunError(f"{path} is missing", hint="the run folder is incomplete; train the run again") from None
    except (ValueError, KeyError, TypeError) as e:
        raise RunError(f"{path} is damaged: {e}", hint="restore it from a copy, or train the run again") from None
    return IdMap(users), IdMap(items)


# ---------------------------------------------------------------- reading tables


def read_table(path: Path) -> dict[str, list[Any]]:
    """Columns by name from a CSV/TSV (delimiter sniffed) or Parquet file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"interaction file not found: {path}", hint="set data.path to a CSV, TSV or Parquet file")
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise DataError(f"{path} is Parquet, which needs pyarrow", hint="pip install pyarrow, or save the "
                            "table as CSV") from None
        try:
            table = pq.read_table(path)
        except Exception as e:  # pyarrow's own error types
            raise DataError(f"{path} is not a readable Parquet file: {str(e)[:200]}") from None
        return {name: table.column(name).to_pylist() for name in table.column_names}
    from danlu.data.tabular import sniff_delimiter
    from danlu.data.text.files import decode_text

    text = decode_text(path.read_bytes(), path)  # UTF-8, or an error that guesses the encoding for iconv
    if not text.strip():
        raise DataError(f"{path} is empty", hint="an interaction table has a header row and one row per event")
    delim = sniff_delimiter(text, path)
    rows = list(csv.reader(io.StringIO(text), delimiter=delim))
    header = [h.strip() for h in rows[0]]
    body = [r for r in rows[1:] if any(c.strip() for c in r)]
    bad = next((i for i, r in enumerate(body) if len(r) != len(header)), None)
    if bad is not None:
        raise DataError(f"{path}: row {bad + 2} has {len(body[bad])} fields, the header has {len(header)}",
                        hint=f"check the delimiter ({delim!r} was used) and quoting on that line")
    cols: dict[str, list[Any]] = {h: [] for h in header}
    for r in body:
        for h, v in zip(header, r, strict=True):
            cols[h].append(v)
    return cols


def pick_column(columns: list[str], wanted: str | None, role: str, path: Path, required: bool = True,
                names: dict[str, tuple[str, ...]] = COMMON_NAMES) -> str | None:
    """The column for ``role``: the recipe's name, or the first common name present (case-insensitive)."""
    if wanted is not None and wanted != "auto":
        if wanted not in columns:
            raise DataError(f"{path} has no column {wanted!r} (the {role} column)",
                            hint=f"columns there: {', '.join(columns)}")
        return wanted
    if wanted is None:
        return None
    lower = {_squash(c): c for c in reversed(columns)}  # the first of two columns that squash alike wins
    for name in names[role]:
        if _squash(name) in lower:
            return lower[_squash(name)]
    if required:
        raise DataError(f"{path}: no {role} column found among {', '.join(columns)}",
                        hint=f"name it in the recipe: recommend.{role}_column=COLUMN")
    return None


def _squash(name: str) -> str:
    """A column name without case, spaces, '_', '-' or '.': 'Customer ID', 'customer_id' and 'CustomerId' meet."""
    return re.sub(r"[\s_.\-]+", "", name.strip().lower())


def _floats(values: list[Any], what: str, path: Path) -> np.ndarray:
    try:
        return np.asarray([float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError):
        bad = next(i for i, v in enumerate(values) if not _is_number(v))
        raise DataError(f"{path}: {what} on row {bad + 2} is {values[bad]!r}, not a number",
                        hint=f"fix or drop that row, or set the {what} column to null") from None


def _ratings(values: list[Any], path: Path) -> tuple[np.ndarray, int]:
    """Ratings as floats, a blank cell as NaN (an interaction without a rating), and how many were blank;
    a cell that is not a number is an error naming its row."""
    blank = np.fromiter((v is None or str(v).strip() in _BLANK for v in values), dtype=bool, count=len(values))
    if not blank.any():
        return _floats(values, "rating", path), 0
    out = np.full(len(values), np.nan)
    rows = np.flatnonzero(~blank)
    try:
        out[rows] = [float(values[i]) for i in rows]
    except (TypeError, ValueError):
        bad = next(i for i in rows if not _is_number(values[i]))
        raise DataError(f"{path}: rating on row {bad + 2} is {values[bad]!r}, not a number",
                        hint="fix or drop that row (a blank cell is read as no rating), or set the rating column "
                             "to null") from None
    return out, int(blank.sum())


_BLANK = ("", "nan", "NaN", "NA", "N/A", "null", "None")


def _is_number(v: Any) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


def _times(values: list[Any], path: Path) -> np.ndarray:
    """Unix seconds; ISO dates are accepted too."""
    if all(_is_number(v) for v in values):
        return np.asarray([float(v) for v in values], dtype=np.float64).astype(np.int64)
    import datetime as dt

    out = np.empty(len(values), dtype=np.int64)
    for i, v in enumerate(values):
        try:
            d = v if isinstance(v, dt.datetime) else dt.datetime.fromisoformat(str(v).strip())
        except ValueError:
            raise DataError(f"{path}: timestamp on row {i + 2} is {v!r}", hint="give Unix seconds or ISO dates "
                            "(2016-10-16 or 2016-10-16T12:00:00)") from None
        if d.tzinfo is None:
            d = d.replace(tzinfo=dt.UTC)
        out[i] = int(d.timestamp())
    return out


def read_interactions(path: Path, *, user_column: str = "auto", item_column: str = "auto",
                      rating_column: str | None = "auto", time_column: str | None = "auto",
                      rating_scale: tuple[float, float] | None = None) -> Interactions:
    """The interaction table, checked and indexed; duplicates of a (user, item) pair become one row."""
    path = Path(path)
    cols = read_table(path)
    names = list(cols)
    ucol = pick_column(names, user_column, "user", path)
    icol = pick_column(names, item_column, "item", path)
    rcol = pick_column(names, rating_column, "rating", path, required=False)
    tcol = pick_column(names, time_column, "time", path, required=False)
    if ucol == icol:
        raise DataError(f"{path}: the user and item columns are both {ucol!r}", hint="name them apart in the recipe")
    raw_users = [_norm_id(v) for v in cols[ucol]]
    raw_items = [_norm_id(v) for v in cols[icol]]
    n = len(raw_users)
    if n == 0:
        raise DataError(f"{path} has a header but no rows", hint="an interaction table has one row per event")
    for role, col, raw in (("user", ucol, raw_users), ("item", icol, raw_items)):
        empty = [i for i, v in enumerate(raw) if v in ("", "nan", "None", "NaN")]
        if empty:
            raise DataError(f"{path}: {len(empty)} row(s) have an empty {role} id (column {col!r}, first on row "
                            f"{empty[0] + 2})", hint="drop those rows or fill in the ids")
    if n >= 50 and len(set(raw_users)) == n:
        raise DataError(f"{path}: every one of the {n} rows has a different {ucol!r}, so no user has two "
                        "interactions: this is probably not the user column",
                        hint=f"name the user column: recommend.user_column=... (columns: {', '.join(names)})")
    ratings, unrated = _ratings(cols[rcol], path) if rcol else (None, 0)
    if ratings is not None:
        known = ~np.isnan(ratings)
        if not np.isfinite(ratings[known]).all():
            bad = int(np.flatnonzero(known & ~np.isfinite(ratings))[0])
            raise DataError(f"{path}: rating on row {bad + 2} is not a finite number")
        if rating_scale is not None:
            lo, hi = rating_scale
            out = np.flatnonzero(known & ((ratings < lo) | (ratings > hi)))
            if len(out):
                raise DataError(f"{path}: {len(out)} rating(s) fall outside the declared scale [{lo:g}, {hi:g}] "
                                f"(first: {ratings[out[0]]:g} on row {out[0] + 2})",
                                hint="fix those rows, or declare the real scale: recommend.rating_scale=[lo,hi]")
    times = _times(cols[tcol], path) if tcol else None
    user_map = IdMap(list(dict.fromkeys(raw_users)))
    item_map = IdMap(list(dict.fromkeys(raw_items)))
    users = np.fromiter((user_map.index[u] for u in raw_users), dtype=np.int64, count=n)
    items = np.fromiter((item_map.index[i] for i in raw_items), dtype=np.int64, count=n)
    notes = [f"columns: user {ucol!r}, item {icol!r}, rating {rcol!r}, time {tcol!r}"]
    if unrated:
        notes.append(f"{unrated} row(s) have no rating: kept as interactions (positives under implicit: all; "
                     "below any rating threshold; left out of rating prediction)")
    users, items, ratings, times, dup_note = _aggregate(users, items, ratings, times)
    if dup_note:
        notes.append(dup_note)
    return Interactions(users, items, None if ratings is None else ratings.astype(np.float32), times,
                        user_map, item_map, source=str(path), notes=notes)


def _aggregate(users: np.ndarray, items: np.ndarray, ratings: np.ndarray | None,
               times: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None, str]:
    """One row per (user, item): the mean rating and the latest time of the duplicates, with a note."""
    key = users * (int(items.max()) + 1) + items
    uniq, first, inverse, counts = np.unique(key, return_index=True, return_inverse=True, return_counts=True)
    if len(uniq) == len(key):
        return users, items, ratings, times, ""
    order = np.sort(first)  # keep the table's order of first appearance
    pos = np.empty(len(uniq), dtype=np.int64)
    pos[np.argsort(first)] = np.arange(len(uniq))
    group = pos[inverse]
    new_r = None
    if ratings is not None:  # the mean of the known ratings; a pair rated nowhere stays unrated (NaN)
        known = ~np.isnan(ratings)
        total = np.bincount(group[known], weights=ratings[known], minlength=len(uniq))
        count = np.bincount(group[known], minlength=len(uniq))
        with np.errstate(invalid="ignore", divide="ignore"):
            new_r = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    new_t = None
    if times is not None:
        new_t = np.full(len(uniq), np.iinfo(np.int64).min, dtype=np.int64)
        np.maximum.at(new_t, group, times)
    dups = int((counts > 1).sum())
    note = (f"{len(key) - len(uniq)} duplicate (user, item) row(s) over {dups} pair(s) were merged into one each "
            f"({'mean rating, ' if ratings is not None else ''}{'latest time' if times is not None else 'one row'})")
    return users[order], items[order], new_r, new_t, note


def attach_item_table(data: Interactions, path: Path, *, id_column: str = "auto", title_column: str = "auto",
                      genres_column: str = "auto", year_column: str = "auto") -> None:
    """Titles, genres and years per item index from a side table; items it lacks are an error."""
    path = Path(path)
    cols = read_table(path)
    names = list(cols)
    icol = pick_column(names, id_column, "item", path)
    ids = [_norm_id(v) for v in cols[icol]]
    row_of = {s: i for i, s in enumerate(ids)}
    missing = [s for s in data.item_map.ids if s not in row_of]
    if missing:
        raise DataError(f"{path} lacks {len(missing)} item(s) that the interactions use (first: {missing[:5]})",
                        hint="add them to the item table, or drop their interactions")
    rows = [row_of[s] for s in data.item_map.ids]
    for role, wanted in (("title", title_column), ("genres", genres_column), ("year", year_column)):
        col = pick_column(names, wanted, role, path, required=False, names=ITEM_TABLE_NAMES)
        if col is None:
            continue
        values = [cols[col][r] for r in rows]
        if role == "genres":
            data.item_info["genres"] = [[g for g in re.split(r"[|,;]", str(v or "")) if g and g != "(no genres listed)"]
                                        for v in values]
        elif role == "year":
            data.item_info["year"] = [int(float(v)) if _is_number(v) and str(v).strip() not in ("", "nan") else None
                                      for v in values]
        else:
            data.item_info["title"] = ["" if v is None else str(v) for v in values]
    data.notes.append(f"item table {path.name}: {', '.join(data.item_info) or 'no side columns found'}")


def load_movielens(folder: Path) -> Interactions:
    """MovieLens (ratings.csv + movies.csv): ratings on a 0.5-5 scale, titles, genres and years."""
    folder = Path(folder)
    data = read_interactions(folder / "ratings.csv", user_column="userId", item_column="movieId",
                             rating_column="rating", time_column="timestamp", rating_scale=(0.5, 5.0))
    if (folder / "movies.csv").is_file():
        attach_item_table(data, folder / "movies.csv", id_column="movieId")
    data.source = "movielens"
    return data


def item_label(data_info: dict[str, list[Any]], item_ids: list[str], index: int) -> str:
    """``Title (year)`` when known, else the item's id."""
    titles = data_info.get("title")
    title = titles[index] if titles and titles[index] else f"item {item_ids[index]}"
    years = data_info.get("year")
    year = years[index] if years else None
    return f"{title} ({year})" if year else title
