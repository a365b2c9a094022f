"""What `danlu predict` and `danlu explain` read as inputs: arguments, `-` for stdin lines, and --file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

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
            raw = stream.read() if stream is not None else sys.stdin.read().encode()
            inputs.extend(read_lines(raw, Path("<stdin>")))
        else:
            inputs.append(item)
    if a.file:
        from danlu.data.text.files import read_bytes  # gzipped files too, as training reads them

        inputs.extend(read_lines(read_bytes(Path(a.file)), Path(a.file)) if kind == "text" else [a.file])
    return inputs
