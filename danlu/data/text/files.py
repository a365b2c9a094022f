"""Read a text column (and a label column) from CSV, TSV or JSON-lines files, optionally gzipped.

Real corpora are messy: ChnSentiCorp has unbalanced ``"`` that make quote-aware readers merge
hundreds of rows, SST-2 ships a CRLF file, and Windows tools add a BOM. This reader never quotes
TSV, falls back from quoted to plain CSV when only that parses, and turns every problem into a
DataError that names the file and line.
"""

from __future__ import annotations

import csv
import gzip
import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from danlu.data.labels import canonical_label, is_missing_label
from danlu.errors import DataError

TEXT_NAMES = ("text", "sentence", "text_a", "review", "content", "comment")
LABEL_NAMES = ("label", "labels", "target", "class", "sentiment", "y")
SEPARATOR_NAMES = {",": "comma", ";": "semicolon", "|": "pipe", "\t": "tab"}
FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".txt": "tsv",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".ndjson": "jsonl",
}

# One parsed record: (1-based line number, fields); fields is None for a blank line and holds None
# where a JSON object lacks a key.
_Row = tuple[int, "list[str | None] | None"]


@dataclass
class TextTable:
    """Texts and raw label strings of one file, plus what was skipped and why."""

    texts: list[str]
    labels: list[str] | None  # stripped raw strings; None for an unlabelled file
    columns: list[str]  # every column name in the header
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)
    lines: list[int] = field(default_factory=list)  # line number of each kept row
    text_column: str = ""
    label_column: str | None = None
    notes: list[str] = field(default_factory=list)  # how the file was read, when that was unusual
    path: str = ""

    def __len__(self) -> int:
        return len(self.texts)


def read_text_table(
    path: str | Path,
    text_column: str | int = "auto",
    label_column: str | int | None = "auto",
) -> TextTable:
    """Read one text file; columns by header name or 0-based index, ``label_column=None`` for no labels.

    Texts are stripped of surrounding whitespace; rows whose text is empty or missing are skipped and
    listed in ``skipped`` rather than silently dropped.
    """
    p = Path(path).expanduser()
    fmt = _format_of(p)
    content = decode_text(read_bytes(p), p)
    if not content.strip():
        raise DataError(f"{p} is empty", hint="the file has no header and no rows")
    notes: list[str] = []
    delim = "\t" if fmt == "tsv" else ","  # csv: sniffed below; jsonl: what joins extra fields (never)
    if fmt == "jsonl":
        header, rows = _parse_json(content, p, notes)
    else:
        lines = [line.rstrip("\r") for line in content.split("\n")]
        if lines and lines[-1] == "":
            lines.pop()  # the newline after the last row
        if fmt == "tsv":
            rows = [(i + 1, line.split("\t") if line.strip() else None) for i, line in enumerate(lines)]
        else:
            delim = _csv_delimiter(lines)
            if delim != ",":
                notes.append(f"fields are separated by {SEPARATOR_NAMES[delim]}s")
            rows = _parse_csv(lines, p, notes, delim)
        header, first, rows = _take_header(rows, p)
        if _headerless(header, rows):
            rows = [first, *rows]
            header = [str(j) for j in range(len(header))]
            text_column, label_column = _guess_columns(rows, text_column, label_column)
            notes.append("no header row: the first line is data (a value of its label column recurs below), "
                         f"so columns are numbered from 0; text column {text_column}, label column {label_column}")
    if not any(fields is not None for _, fields in rows):
        raise DataError(f"{p} has a header ({', '.join(header)}) but no rows")
    label_idx = None if label_column is None else _pick_column(header, label_column, "label", LABEL_NAMES, p)
    text_idx = _pick_column(header, text_column, "text", TEXT_NAMES, p, exclude=label_idx)
    if text_idx == label_idx:
        raise DataError(f"{p}: the text and label columns are the same column '{header[text_idx]}'")
    table = TextTable(
        texts=[],
        labels=None if label_idx is None else [],
        columns=header,
        text_column=header[text_idx],
        label_column=None if label_idx is None else header[label_idx],
        notes=notes,
        path=str(p),
    )
    _fill(table, rows, text_idx, label_idx, fmt, p, delim)
    if not table.texts:
        reasons = sorted({r for _, r in table.skipped})
        raise DataError(
            f"{p} has no rows with text in column '{table.text_column}'",
            hint=f"skipped {len(table.skipped)} row(s): {', '.join(reasons) or 'none'}; check text_column",
        )
    return table


def _format_of(p: Path) -> str:
    suffixes = [s.lower() for s in p.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    ext = suffixes[-1] if suffixes else ""
    if ext not in FORMATS:
        raise DataError(
            f"{p}: unsupported text file type '{ext or '(none)'}'",
            hint=f"use one of {', '.join(sorted(FORMATS))}, optionally gzipped (.gz)",
        )
    return FORMATS[ext]


def read_bytes(p: Path) -> bytes:
    """A text file's bytes, gunzipped when gzipped; a missing, unreadable or broken file is a DataError."""
    if not p.exists():
        raise DataError(f"file not found: {p}", hint=f"paths are relative to {Path.cwd()}")
    if p.is_dir():
        raise DataError(f"{p} is a folder, not a text file")
    if not p.is_file():  # reading a named pipe would wait for a writer forever
        raise DataError(f"{p} is not a regular file (a named pipe, socket or device)", hint="give a file")
    try:
        raw = p.read_bytes()
        if raw[:2] == b"\x1f\x8b":  # gzip magic, whatever the name says
            raw = gzip.decompress(raw)
    except PermissionError:
        raise DataError(f"cannot read {p}: permission denied") from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise DataError(f"{p} is not a valid gzip file ({e})", hint="the download may be truncated") from None
    return raw


def decode_text(raw: bytes, p: Path) -> str:
    """UTF-8 (a BOM dropped), or a DataError naming the line and guessing the encoding for iconv."""
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise DataError(
            f"{p} is UTF-16 text; danlu reads UTF-8",
            hint=f"re-encode it, e.g. iconv -f utf-16 -t utf-8 {p.name} > utf8.{p.name}",
        )
    try:
        return raw.decode("utf-8-sig")  # also drops a BOM
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        bad = raw[e.start : e.start + 4].hex(" ")
        start, end = raw.rfind(b"\n", 0, e.start) + 1, raw.find(b"\n", e.start)
        guess, what = "gbk", "it looks like GBK/GB18030 (Chinese Windows) text"
        try:
            raw[start : end if end >= 0 else len(raw)].decode("gb18030")
        except UnicodeDecodeError:
            guess, what = "ENCODING", "its encoding is unknown (big5? latin1?)"
        unzip = f"zcat {p.name} | " if p.suffix.lower() == ".gz" else f"cat {p.name} | "
        raise DataError(
            f"{p}, line {line}: not UTF-8 (bytes {bad}); {what}",
            hint=f"re-encode the file to UTF-8, e.g. {unzip}iconv -f {guess} -t utf-8 > fixed{_stem_ext(p)}",
        ) from None


def _stem_ext(p: Path) -> str:
    return "".join(s for s in p.suffixes if s.lower() != ".gz")


def _headerless(header: list[str], rows: list[_Row]) -> bool:
    """True when the "header" is a data row: it names no known column, and its cell in some column with
    few distinct values (a label column) is one of the values that column holds below."""
    if any(h.lower() in TEXT_NAMES + LABEL_NAMES for h in header):
        return False
    sample = [f for _, f in rows[:1000] if f is not None]
    for j, cell in enumerate(header):
        values = [f[j] for f in sample if len(f) > j and f[j] is not None]
        distinct = {v.strip() for v in values}
        if cell.strip() in distinct and len(distinct) <= max(2, len(values) // 5):
            return True
    return False


def _guess_columns(rows: list[_Row], text_column: str | int, label_column: str | int | None
                   ) -> tuple[str | int, str | int | None]:
    """For numbered columns: the label column has the fewest distinct values, the text the longest cells."""
    sample = [f for _, f in rows[:1000] if f is not None]
    width = min(len(f) for f in sample)
    if label_column == "auto":
        label_column = min(range(width), key=lambda j: len({f[j] for f in sample}))
    if text_column == "auto":
        others = [j for j in range(width) if j != label_column]
        text_column = max(others, key=lambda j: sum(len(f[j] or "") for f in sample)) if others else 0
    return text_column, label_column


def _take_header(rows: list[_Row], p: Path) -> tuple[list[str], _Row, list[_Row]]:
    """(column names, the record they came from, the rows after it)."""
    for k, (_, fields) in enumerate(rows):
        if fields is not None:
            header = [str(f).strip().strip('"').strip() for f in fields]
            return header, rows[k], rows[k + 1 :]
    raise DataError(f"{p} is empty", hint="the file has only blank lines")


def _csv_delimiter(lines: list[str]) -> str:
    """Comma, unless the header line has none and has semicolons (European spreadsheets) or pipes."""
    header = next((line for line in lines if line.strip()), "")
    if "," in header:
        return ","
    return max(";|", key=header.count) if any(c in header for c in ";|") else ","


# Python's csv module refuses fields over 131,072 characters; a long review or a document is more. Up to this
# bound a field is read; past it the file is refused with a DataError naming the line (exit 2).
MAX_FIELD_CHARS = 16 * 2**20


def allow_long_fields() -> None:
    """Raise the csv module's field limit (process-wide, never lowered) to MAX_FIELD_CHARS."""
    if csv.field_size_limit() < MAX_FIELD_CHARS:
        csv.field_size_limit(MAX_FIELD_CHARS)


def field_too_long(p: Path, line: int) -> DataError:
    return DataError(f"{p}, line {line}: a field is longer than {MAX_FIELD_CHARS:,} characters",
                     hint="check the quoting (an unclosed quote runs to the end of the file), or split the text")


def _parse_csv(lines: list[str], p: Path, notes: list[str], delim: str = ",") -> list[_Row]:
    """Strict RFC-4180 quoting, unless the file only parses with quotes off (stray quotes merged rows).

    Strict parsing is what tells the two apart: a stray quote in a text opens a "field" that ends at
    the next stray quote, which is rarely followed by a comma or the end of the line, so strict parsing
    fails there, while a real quoted field (commas and line breaks inside) always parses.
    """
    quoted: list[_Row] = []
    error: str | None = None
    unclosed = False
    allow_long_fields()
    reader = csv.reader((line + "\n" for line in lines), delimiter=delim, strict=True)
    start = 1
    try:
        for fields in reader:
            quoted.append((start, fields if fields else None))
            start = reader.line_num + 1
    except csv.Error as e:
        if "field limit" in str(e):
            raise field_too_long(p, start) from None
        error, unclosed = f"line {start}: {e}", "unexpected end of data" in str(e)
    counts = [len(f) for _, f in quoted if f is not None]
    width = counts[0] if counts else 0
    uneven = sum(c != width for c in counts)
    merged = len(lines) - sum(1 for line in lines if not line.strip()) - len(counts)
    if not error and not uneven:
        if merged:
            notes.append(f"{merged} line break(s) are inside quoted fields (multi-line texts)")
        return quoted
    plain: list[_Row] = [(i + 1, line.split(delim) if line.strip() else None) for i, line in enumerate(lines)]
    plain_counts = [len(f) for _, f in plain if f is not None]
    if plain_counts and all(c == plain_counts[0] for c in plain_counts) and plain_counts[0] > 1:
        notes.append(
            f"read with quote processing off: quoted parsing failed ({error or f'{uneven} uneven row(s)'}); "
            f"every line has {plain_counts[0]} {SEPARATOR_NAMES[delim]}-separated fields without it"
        )
        return plain
    if unclosed:
        raise DataError(
            f"{p}, line {start}: a quote opened on this line is never closed, so the "
            f"{len(lines) - start} line(s) after it were read as one field",
            hint='close or remove that quote (write a literal quote as ""), or save the file as .tsv',
        )
    if error:
        raise DataError(
            f"{p}: CSV parse error at {error}",
            hint="check the quotes on that line; a tab-separated file (.tsv) avoids quoting problems",
        )
    return quoted  # uneven rows: _fill names the first bad line, or joins a last text column's commas


def _parse_json(content: str, p: Path, notes: list[str]) -> tuple[list[str], list[_Row]]:
    """JSON lines (one object a line); a whole-file JSON array of objects is accepted too."""
    objects: list[tuple[int, object]] = []
    if content.lstrip().startswith("["):
        try:
            data = json.loads(content)
        except json.JSONDecodeError as e:
            raise DataError(f"{p}, line {e.lineno}: invalid JSON ({e.msg})") from None
        if not isinstance(data, list):
            raise DataError(f"{p}: expected a JSON array of objects or one object per line")
        objects = [(i + 1, obj) for i, obj in enumerate(data)]
        notes.append("a JSON array: 'line' numbers are record numbers (1-based)")
    else:
        for i, line in enumerate(content.split("\n")):
            if not line.strip():
                continue
            try:
                objects.append((i + 1, json.loads(line)))
            except json.JSONDecodeError as e:
                raise DataError(
                    f"{p}, line {i + 1}: invalid JSON ({e.msg})",
                    hint="a .jsonl/.json file needs one JSON object per line",
                ) from None
    header: dict[str, None] = {}
    for line_no, obj in objects:
        if not isinstance(obj, dict):
            raise DataError(f"{p}, line {line_no}: expected a JSON object, got {type(obj).__name__}")
        header.update(dict.fromkeys(str(k) for k in obj))
    if not header:
        raise DataError(f"{p} is empty", hint="no JSON objects with keys found")
    names = list(header)
    rows: list[_Row] = [
        (line_no, [_json_value(obj.get(k)) for k in names])  # type: ignore[union-attr]
        for line_no, obj in objects
    ]
    return names, rows


def _json_value(v: object) -> str | None:
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, (bool, int, float)):
        return str(v)
    return json.dumps(v, ensure_ascii=False)


def _pick_column(
    header: list[str],
    column: str | int,
    role: str,
    common: tuple[str, ...],
    p: Path,
    exclude: int | None = None,
) -> int:
    """Resolve a column name, a 0-based index or "auto" to an index into the header."""
    listing = ", ".join(f"{i}:{h!r}" for i, h in enumerate(header))
    if isinstance(column, int) and not isinstance(column, bool):
        if -len(header) <= column < len(header):
            return column % len(header)
        raise DataError(
            f"{p}: {role} column index {column} is out of range", hint=f"columns found: {listing}"
        )
    name = str(column).strip()
    if name.lower() == "auto":
        lowered = [h.lower() for h in header]
        for cand in common:
            if cand in lowered and lowered.index(cand) != exclude:
                return lowered.index(cand)
        others = [i for i in range(len(header)) if i != exclude]
        if role == "text" and len(others) == 1:
            return others[0]
        extra = ", or None for an unlabelled file" if role == "label" else ""
        raise DataError(
            f"{p}: no {role} column found (looked for {', '.join(common)})",
            hint=f"columns found: {listing}; set {role}_column to a name or 0-based index{extra}",
        )
    if name in header:
        return header.index(name)
    matches = [i for i, h in enumerate(header) if h.lower() == name.lower()]
    if len(matches) == 1:
        return matches[0]
    if name.isdigit():
        return _pick_column(header, int(name), role, common, p, exclude)
    raise DataError(f"{p}: no column named '{name}' for the {role}", hint=f"columns found: {listing}")


def _fill(
    table: TextTable, rows: list[_Row], text_idx: int, label_idx: int | None, fmt: str, p: Path, delim: str
) -> None:
    width = len(table.columns)
    joined = 0
    for line_no, fields in rows:
        if fields is None:
            table.skipped.append((line_no, "blank line"))
            continue
        if len(fields) < width:
            raise DataError(
                f"{p}, line {line_no}: {len(fields)} field(s) but the header has {width} "
                f"({', '.join(table.columns)})",
                hint="a separator is missing on that line"
                if fmt != "csv"
                else f"check {SEPARATOR_NAMES[delim]}s and quotes there",
            )
        if len(fields) > width:
            if text_idx != width - 1 or fmt == "jsonl":
                sep = SEPARATOR_NAMES[delim]
                raise DataError(
                    f"{p}, line {line_no}: {len(fields)} field(s) but the header has {width}",
                    hint=f"the text probably contains a {sep}; put the text column last or quote it",
                )
            fields = fields[: width - 1] + [delim.join(fields[width - 1 :])]  # type: ignore
            joined += 1
        text = fields[text_idx]
        if text is None:
            table.skipped.append((line_no, "missing text"))
            continue
        text = text.strip()
        if not text:
            table.skipped.append((line_no, "empty text"))
            continue
        if label_idx is not None:
            label = fields[label_idx]
            label = "" if label is None else label.strip().strip('"').strip()
            if is_missing_label(label):
                table.skipped.append((line_no, "missing label"))
                continue
            table.labels.append(canonical_label(label))  # type: ignore[union-attr]
        table.texts.append(text)
        table.lines.append(line_no)
    if joined:
        table.notes.append(
            f"{joined} row(s) had {SEPARATOR_NAMES[delim]}s inside the text; the extra fields were joined into the text"
        )
