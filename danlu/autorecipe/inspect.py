"""Look at a data path before any recipe exists: what kind of data it is, how much, which classes,
columns and language, and the images' own sizes and modes. ``choose`` turns this into a recipe.

Reads a sample, never the whole dataset into tensors; imports neither torch nor pandas.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
import statistics
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from danlu.errors import DataError

TEXT_SUFFIXES = (".csv", ".tsv", ".txt", ".jsonl", ".json", ".ndjson")
RECIPE_SUFFIXES = (".yaml", ".yml")
IMAGE_SAMPLE = 240  # images opened to learn sizes and modes: enough for a median, a second or two
ROW_SAMPLE = 5000  # rows read to tell text from a table and find the label
# a free-text column: most cells distinct and long (or Chinese, where 8 characters say a lot)
TEXT_MIN_CHARS, TEXT_MIN_CJK_CHARS, TEXT_MIN_DISTINCT = 20, 8, 0.5
CJK_SHARE_ZH = 0.3  # the share of CJK characters above which text is read as Chinese (danlu.text.tokenizers)
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


@dataclass
class DataProfile:
    """What ``inspect_data`` found; every field is printable and goes to auto.json in the run."""

    path: str
    kind: str  # image | text | tabular | interactions | audio
    layout: str  # image-folder, text-file, text-folder, table-file, interactions-file, audio-folder
    rows: int  # images, texts or table rows (all splits)
    classes: list[str] = field(default_factory=list)
    class_counts: dict[str, int] = field(default_factory=dict)
    task: str = "classification"  # or regression (tables only)
    # images
    image_side: int | None = None  # median shorter side of the sampled images
    image_sides: tuple[int, int] | None = None  # smallest and largest shorter side seen
    image_side_low: int | None = None  # the shorter side a quarter of the images are below
    image_modes: dict[str, int] = field(default_factory=dict)
    image_formats: dict[str, int] = field(default_factory=dict)
    grayscale: bool | None = None  # every sampled image has equal colour channels
    # text
    language: str | None = None  # zh | en
    cjk_fraction: float | None = None
    text_column: str | None = None
    label_column: str | None = None
    median_chars: float | None = None
    # tables
    columns: list[str] = field(default_factory=list)
    target: str | None = None
    numeric_columns: int = 0
    other_columns: int = 0
    # audio: clip lengths (seconds) and sample rates read from the sampled files' headers
    clip_seconds: tuple[float, float, float] | None = None  # shortest, median, 90th percentile
    sample_rates: dict[str, int] = field(default_factory=dict)
    # user-item interactions (kind "interactions"): the columns found and the table's sizes
    user_column: str | None = None
    item_column: str | None = None
    rating_column: str | None = None
    time_column: str | None = None
    users: int | None = None
    items: int | None = None

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, [], {})}

    def summary(self) -> str:
        """One line a person reads before training starts."""
        if self.kind == "image":
            side = (f"shorter sides {self.image_sides[0]}-{self.image_sides[1]} px (a quarter below "
                    f"{self.image_side_low}, median {self.image_side})")
            modes = ", ".join(f"{m} {n}" for m, n in sorted(self.image_modes.items()))
            fmts = ", ".join(f"{f} {n}" for f, n in sorted(self.image_formats.items()))
            return (f"{self.rows} images in {len(self.classes)} classes; {side}; modes {modes}; formats {fmts}; "
                    f"{'grayscale content' if self.grayscale else 'colour content'}")
        if self.kind == "text":
            lang = {"zh": "Chinese", "en": "English"}.get(self.language or "", self.language)
            return (f"{self.rows} texts in {len(self.classes)} classes; {lang} (CJK share {self.cjk_fraction:.2f}); "
                    f"median {self.median_chars:.0f} characters; text column '{self.text_column}', label column "
                    f"'{self.label_column}'")
        if self.kind == "audio":
            lo, mid, p90 = self.clip_seconds or (0.0, 0.0, 0.0)
            rates = ", ".join(f"{r} Hz {n}" for r, n in sorted(self.sample_rates.items()))
            return (f"{self.rows} audio clips in {len(self.classes)} classes; lengths {lo:.2f}-{p90:.2f} s "
                    f"(median {mid:.2f}, 90 % below {p90:.2f}); sample rates {rates}")
        if self.kind == "interactions":
            extra = ", ".join(f"{role} '{col}'" for role, col in (("rating", self.rating_column),
                                                                   ("time", self.time_column)) if col)
            return (f"{self.rows} interactions of {self.users} users with {self.items} items (user column "
                    f"'{self.user_column}', item column '{self.item_column}'{', ' + extra if extra else ''})")
        what = (f"{len(self.classes)} classes" if self.task == "classification" else "a number (regression)")
        return (f"{self.rows} rows x {len(self.columns)} columns ({self.numeric_columns} numeric, "
                f"{self.other_columns} other); target '{self.target}': {what}")


def looks_like_data(arg: str) -> bool:
    """Whether a train argument names data rather than a recipe: an existing folder or non-YAML file.

    A name that does not exist stays a recipe name, so its typos keep the unknown-recipe error."""
    p = Path(arg).expanduser()
    if p.suffix == "" and len(p.parts) == 1:  # a built-in recipe's name wins over a folder of that name here
        from danlu.recipe import builtin_recipes

        if arg in builtin_recipes():
            return False
    try:
        return p.is_dir() or (p.is_file() and p.suffix.lower() not in RECIPE_SUFFIXES)
    except OSError:
        return False


def inspect_data(path: str | Path) -> DataProfile:
    """Profile a folder of images, a text file/folder, or a table (CSV/TSV/Parquet)."""
    p = Path(path).expanduser().resolve()
    if not p.exists():
        raise DataError(f"data path not found: {path}", hint="give an image folder, a CSV/Parquet file or a text file")
    if p.is_dir():
        return _inspect_folder(p)
    suffixes = [s.lower() for s in p.suffixes if s.lower() != ".gz"]
    suffix = suffixes[-1] if suffixes else ""
    if suffix in (".parquet", ".pq"):
        return _inspect_parquet(p)
    if suffix in TEXT_SUFFIXES:
        return _inspect_delimited(p)
    from danlu.data.imagefolder import IMAGE_EXTENSIONS

    if suffix in IMAGE_EXTENSIONS:
        raise DataError(f"{p} is one image; training needs a folder of them",
                        hint=f"put images in one folder per class and give the folder: danlu train {p.parent}")
    raise DataError(f"cannot tell what {p} holds from its name ({suffix or 'no extension'})",
                    hint="danlu train PATH reads image folders, .csv/.tsv/.parquet tables and .csv/.tsv/.txt/.jsonl "
                         "texts; or give a recipe: danlu recipes lists them")


# ---------------------------------------------------------------- folders


def _inspect_folder(root: Path) -> DataProfile:
    train_file = _train_file(root)
    if train_file is not None:  # train.tsv (+ dev/test): a text corpus folder
        profile = _inspect_delimited(train_file)
        if profile.kind != "text":
            raise DataError(f"{root} holds {train_file.name}, which reads as a table, not texts",
                            hint=f"train on the file itself: danlu train {train_file}")
        profile.path, profile.layout = str(root), "text-folder"
        return profile
    from danlu.data.imagefolder import scan_image_folder

    if _holds_audio(root):
        return _audio_profile(root)
    try:
        layout = scan_image_folder(root)
    except DataError as e:
        raise DataError(f"{root} is neither an image, audio nor text folder: {e.message}",
                        hint="an image or audio folder has one subfolder per class (or train/<class>/); a text "
                             "folder has train.csv/.tsv/.jsonl (and dev/test)") from None
    return _image_profile(root, layout)


def _train_file(root: Path) -> Path | None:
    """train.tsv/.csv/.jsonl/.txt[.gz] in a folder, as the text loader looks for it."""
    from danlu.data.text.dataset import EXTENSIONS, SPLIT_NAMES

    for stem in SPLIT_NAMES["train"]:
        for ext in EXTENSIONS:
            for suffix in (ext, ext + ".gz"):
                if (root / f"{stem}{suffix}").is_file():
                    return root / f"{stem}{suffix}"
    return None


def _image_profile(root: Path, layout: Any) -> DataProfile:
    from PIL import Image

    samples = [s for split in layout.splits.values() for s in split]
    counts = Counter(layout.classes[label] for _, label in samples)
    step = max(1, len(samples) // IMAGE_SAMPLE)
    sides, modes, formats, gray = [], Counter(), Counter(), True
    for path, _ in samples[::step][:IMAGE_SAMPLE]:
        try:
            with Image.open(path) as img:
                sides.append(min(img.size))
                modes[img.mode] += 1
                formats[img.format or path.suffix.lstrip(".").upper()] += 1
                if gray:
                    gray = _is_gray(img)
        except (OSError, ValueError):  # unreadable files are the loader's to report, with their names
            continue
    if not sides:
        raise DataError(f"none of the {len(samples)} image files sampled in {root} could be opened",
                        hint="check that they are real images (open one in a viewer)")
    return DataProfile(path=str(root), kind="image", layout="image-folder", rows=len(samples),
                       classes=list(layout.classes), class_counts=dict(sorted(counts.items())),
                       image_side=int(statistics.median(sides)), image_sides=(min(sides), max(sides)),
                       image_side_low=int(statistics.quantiles(sides, n=4)[0]) if len(sides) > 1 else sides[0],
                       image_modes=dict(modes), image_formats=dict(formats), grayscale=gray)


def _is_gray(img: Any) -> bool:
    """Equal R, G and B everywhere (on a thumbnail): an L image, or a colour file of a grey picture."""
    import numpy as np

    if img.mode in ("1", "L", "LA", "I", "I;16", "F"):
        return True
    small = img.copy()
    small.thumbnail((64, 64))
    rgb = np.asarray(small.convert("RGB"), dtype=np.int16)
    return int(np.abs(rgb[..., 0] - rgb[..., 1]).max()) <= 8 and int(np.abs(rgb[..., 1] - rgb[..., 2]).max()) <= 8


AUDIO_SAMPLE = 400  # clip headers read to learn lengths and rates (headers only: milliseconds each)


def _holds_audio(root: Path) -> bool:
    """Whether the first files met two levels down (root/<class>/ or root/train/<class>/) are mostly audio."""
    from danlu.data.audio import AUDIO_EXTENSIONS
    from danlu.data.imagefolder import IMAGE_EXTENSIONS

    audio = images = 0
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))[:20]:
        for f in itertools.islice(sub.rglob("*"), 50):  # the first files met, not a walk of a big folder
            suffix = f.suffix.lower()
            audio += suffix in AUDIO_EXTENSIONS
            images += suffix in IMAGE_EXTENSIONS
    return audio > images


def _audio_profile(root: Path) -> DataProfile:
    from danlu.data.audio import clip_header
    from danlu.data.audiofolder import scan_audio_folder

    classes, splits, _ = scan_audio_folder(root)
    samples = [s for split in splits.values() for s in split]
    counts = Counter(classes[label] for _, label in samples)
    seconds: list[float] = []
    rates: Counter = Counter()
    for path, _ in samples[:: max(1, len(samples) // AUDIO_SAMPLE)][:AUDIO_SAMPLE]:
        try:
            rate, frames, _channels = clip_header(path)
        except (DataError, OSError):  # unreadable clips are the loader's to list, with their names
            continue
        if rate > 0:
            seconds.append(frames / rate)
            rates[str(rate)] += 1
    if not seconds:
        raise DataError(f"none of the {len(samples)} audio files sampled in {root} could be read",
                        hint="check that they are real recordings (play one)")
    seconds.sort()
    p90 = seconds[min(len(seconds) - 1, int(0.9 * len(seconds)))]
    return DataProfile(path=str(root), kind="audio", layout="audio-folder", rows=len(samples),
                       classes=list(classes), class_counts=dict(sorted(counts.items())),
                       clip_seconds=(round(seconds[0], 3), round(statistics.median(seconds), 3), round(p90, 3)),
                       sample_rates=dict(rates))


# ---------------------------------------------------------------- delimited files


def _read_rows(p: Path) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a CSV/TSV/JSONL file."""
    from danlu.data.text.files import FORMATS, decode_text, read_bytes

    suffixes = [x.lower() for x in p.suffixes if x.lower() != ".gz"]
    fmt = FORMATS.get(suffixes[-1] if suffixes else "", "csv")
    text = decode_text(read_bytes(p), p)
    if not text.strip():
        raise DataError(f"{p} is empty", hint="a data file needs a header row and data rows")
    if fmt == "jsonl":
        import json

        records = []
        for line in text.splitlines():
            if line.strip():
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                if isinstance(obj, dict):
                    records.append(obj)
        header = list(dict.fromkeys(k for r in records[:200] for k in r))
        rows = [["" if r.get(k) is None else str(r.get(k)) for k in header] for r in records]
    else:
        from danlu.data.tabular import sniff_delimiter
        from danlu.data.text.files import allow_long_fields

        delim = "\t" if fmt == "tsv" else sniff_delimiter(text)

        allow_long_fields()
        try:
            quoting = csv.QUOTE_NONE if delim == "\t" else csv.QUOTE_MINIMAL  # TSV cells keep their quotes
            parsed = [r for r in csv.reader(io.StringIO(text), delimiter=delim, quoting=quoting)
                      if any(c.strip() for c in r)]
        except csv.Error as e:
            raise DataError(f"{p}: {e}", hint="check the file's quoting") from None
        if not parsed:
            raise DataError(f"{p} has no rows")
        header, rows = [h.strip() for h in parsed[0]], parsed[1:]
    return header, rows


def _sample(rows: list[list[str]]) -> list[list[str]]:
    """Up to ROW_SAMPLE evenly spread rows."""
    return rows[:: max(1, len(rows) // ROW_SAMPLE)][:ROW_SAMPLE]


def _column(rows: list[list[str]], j: int) -> list[str]:
    return [r[j].strip() for r in rows if len(r) > j and r[j].strip() != ""]


def _is_number(s: str) -> bool:
    try:
        float(s.replace(",", ""))
        return True
    except ValueError:
        return False


def _cjk_share(values: list[str]) -> float:
    chars = "".join("".join(v.split()) for v in values[:2000])
    return len(_CJK.findall(chars)) / len(chars) if chars else 0.0


def _is_free_text(values: list[str]) -> bool:
    if not values:
        return False
    median = statistics.median(len(v) for v in values)
    distinct = len(set(values)) / len(values)
    long_enough = median >= TEXT_MIN_CHARS or (median >= TEXT_MIN_CJK_CHARS and _cjk_share(values) >= CJK_SHARE_ZH)
    return long_enough and distinct >= TEXT_MIN_DISTINCT and not all(_is_number(v) for v in values[:200])


def _pick_label(header: list[str], rows: list[list[str]], exclude: set[int]) -> int:
    """A column named like a label, else the last column not excluded."""
    from danlu.data.text.files import LABEL_NAMES

    lowered = [h.lower() for h in header]
    for name in LABEL_NAMES:
        if name in lowered and lowered.index(name) not in exclude:
            return lowered.index(name)
    rest = [j for j in range(len(header)) if j not in exclude]
    if not rest:
        raise DataError("no column is left for the label", hint="a data file needs a label (target) column")
    return rest[-1]


def _inspect_delimited(p: Path) -> DataProfile:
    header, all_rows = _read_rows(p)
    if not all_rows:
        raise DataError(f"{p} has a header but no rows")
    rows, total = _sample(all_rows), len(all_rows)
    cols = {j: _column(rows, j) for j in range(len(header))}
    text_cols = [j for j, v in cols.items() if _is_free_text(v)]
    others = [j for j in cols if j not in text_cols]
    if not text_cols and (found := _interaction_profile(p, header, all_rows)) is not None:
        return found
    # texts: one free-text column beside one label column (a review file); wider files are tables
    if len(text_cols) == 1 and len(others) == 1:
        tj, lj = text_cols[0], others[0]
        texts, labels = cols[tj], cols[lj]
        counts = Counter(labels)
        share = _cjk_share(texts)
        return DataProfile(path=str(p), kind="text", layout="text-file", rows=total,
                           classes=sorted(counts), class_counts=dict(sorted(counts.items())),
                           language="zh" if share >= CJK_SHARE_ZH else "en", cjk_fraction=round(share, 3),
                           text_column=header[tj], label_column=header[lj],
                           median_chars=float(statistics.median(len(t) for t in texts)), columns=header)
    target = _pick_label(header, rows, set())
    return _table_profile(p, header, {j: cols[j] for j in cols}, target, total)


def _table_profile(p: Path, header: list[str], cols: dict[int, list[str]], target: int, total: int) -> DataProfile:
    values = cols[target]
    numeric = [j for j, v in cols.items() if j != target and v and sum(map(_is_number, v)) >= 0.95 * len(v)]
    distinct = Counter(values)
    number_target = bool(values) and all(_is_number(v) for v in values)
    # a numeric target with many distinct values is a quantity (the tabular loader decides the same way)
    regression = number_target and len(distinct) > max(20, len(values) // 20)
    return DataProfile(path=str(p), kind="tabular", layout="table-file", rows=total,
                       classes=[] if regression else sorted(distinct),
                       class_counts={} if regression else dict(sorted(distinct.items())),
                       task="regression" if regression else "classification", columns=header,
                       target=header[target], numeric_columns=len(numeric),
                       other_columns=len(header) - 1 - len(numeric))


def _inspect_parquet(p: Path) -> DataProfile:
    from danlu.data.parquet import read_parquet

    header, all_rows = read_parquet(p)
    rows, total = _sample(all_rows), len(all_rows)
    cols = {j: _column(rows, j) for j in range(len(header))}
    if not any(_is_free_text(v) for v in cols.values()) and (
            found := _interaction_profile(p, header, all_rows)) is not None:
        return found
    return _table_profile(p, header, cols, _pick_label(header, rows, set()), total)


# ---------------------------------------------------------------- interactions

MAX_OTHER_COLUMNS = 1  # besides user, item, rating and time: more is a table about users or items, not events


def _interaction_profile(p: Path, header: list[str], rows: list[Any]) -> DataProfile | None:
    """A table of who interacted with what (a user column and an item column by their names, at most a
    rating, a time and one more column, none named like a label, users that recur), or None."""
    from danlu.data.interactions import pick_column
    from danlu.data.text.files import LABEL_NAMES

    role = {r: pick_column(header, "auto", r, p, required=False) for r in ("user", "item", "rating", "time")}
    if role["user"] is None or role["item"] is None or role["user"] == role["item"]:
        return None
    others = [h for h in header if h not in role.values()]
    if len(others) > MAX_OTHER_COLUMNS or any(h.lower() in LABEL_NAMES for h in others):
        return None
    ju, ji = header.index(role["user"]), header.index(role["item"])
    users = {str(r[ju]).strip() for r in rows if len(r) > ju}
    items = {str(r[ji]).strip() for r in rows if len(r) > ji}
    if len(users) >= 0.9 * len(rows):  # users that do not recur: an id column of some other table
        return None
    return DataProfile(path=str(p), kind="interactions", layout="interactions-file", rows=len(rows),
                       columns=header, task="ranking", user_column=role["user"], item_column=role["item"],
                       rating_column=role["rating"], time_column=role["time"], users=len(users),
                       items=len(items))
