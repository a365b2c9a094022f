"""What `danlu predict` and `danlu explain` read as inputs: arguments, `-` for stdin lines, and --file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def read_lines(raw: bytes, source: Path) -> list[str]:
    """Non-blank lines of UTF-8 text; other encodings get the same error (and iconv hint) as training."""
    from danlu.data.text.files import decode_text

    return [line.rstrip("\r") for line in decode_text(raw, source).split("\n") if line.strip()]


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
