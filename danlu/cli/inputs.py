"""What `danlu predict` and `danlu explain` read as inputs: arguments, `-` for stdin lines, and --file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import BinaryIO

# characters of one input line kept: past what any run's max_len tokens can reach (TextEncoder.max_chars),
# so an over-long line is cut here, before its copies (labels, output rows) and its tokenizing
MAX_LINE_CHARS = 1_000_000


def read_lines(raw: bytes, source: Path) -> list[str]:
    """Non-blank lines of UTF-8 text, each cut to MAX_LINE_CHARS; other encodings get the same error (and
    iconv hint) as training."""
    from danlu.data.text.files import decode_text

    text = decode_text(raw, source)
    lines, start = [], 0
    while start <= len(text):  # each line sliced once, at most MAX_LINE_CHARS: a 100 MB line is never copied
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        line = text[start:min(end, start + MAX_LINE_CHARS)].rstrip("\r")
        if line.strip():
            lines.append(line)
        start = end + 1
    return lines


def collect_inputs(a: argparse.Namespace, kind: str) -> list:
    """``a.inputs`` with each `-` replaced by stdin's lines, then ``a.file`` (its lines for text runs)."""
    inputs: list = []
    for item in a.inputs:
        if item == "-":
            stream = getattr(sys.stdin, "buffer", None)  # bytes, decoded as files are (not the locale's way)
            raw = capped_lines(stream) if stream is not None else sys.stdin.read().encode()
            inputs.extend(read_lines(raw, Path("<stdin>")))
        else:
            inputs.append(item)
    if a.file:
        inputs.extend(read_lines(file_bytes(Path(a.file)), Path(a.file)) if kind == "text" else [a.file])
    return inputs


def file_bytes(p: Path) -> bytes:
    """A text file's bytes with each line cut to 4 bytes a kept character (at a character boundary), read
    a line at a time: one 100 MB line never sits in memory. Gzipped files are read whole, as training
    reads them; a missing, special or unreadable file is the same DataError as there."""
    from danlu.data.text.files import read_bytes

    if not p.is_file():
        return read_bytes(p)  # its error
    try:
        with p.open("rb") as f:
            if f.read(2) == b"\x1f\x8b":
                return read_bytes(p)
            f.seek(0)
            return capped_lines(f)
    except PermissionError:
        return read_bytes(p)  # its error


def capped_lines(stream: BinaryIO) -> bytes:
    """A binary stream's bytes with each line cut to 4 bytes a kept character (at a character boundary),
    read a line at a time: a file or stdin with one 100 MB line never sits in memory whole."""
    limit = 4 * MAX_LINE_CHARS
    out = []
    while line := stream.readline(limit):
        if len(line) == limit and not line.endswith(b"\n"):  # over-long: the rest of it is skipped
            while (rest := stream.readline(1 << 20)) and not rest.endswith(b"\n"):
                pass
            line = _whole_characters(line) + b"\n"
        out.append(line)
    return b"".join(out)


def _whole_characters(data: bytes) -> bytes:
    """``data`` without a UTF-8 character cut at its end."""
    end = len(data)
    while end and data[end - 1] & 0xC0 == 0x80:  # continuation bytes
        end -= 1
    if end and data[end - 1] >= 0xC0:  # the lead byte of the cut character
        end -= 1
    return data[:end] if end < len(data) and (len(data) - end) < 4 else data
