"""Names from the user's data (class folders, CSV labels, schema.json) made safe to print.

A class folder may be called ``\\x1b[2J`` (clears the terminal), hold a newline (a forged output line) or a
``|`` (splits a Markdown table cell): such characters are shown escaped, as Python writes them in a string.
"""

from __future__ import annotations

import unicodedata

# bidirectional overrides and isolates reorder what follows them on screen ("Trojan source")
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")


def _unsafe(ch: str) -> bool:
    return ch in _BIDI or unicodedata.category(ch) in ("Cc", "Zl", "Zp")


def terminal_safe(text: object, keep_newlines: bool = False) -> str:
    """``text`` with control characters (ANSI escapes, newlines, carriage returns, bidi overrides) escaped."""
    s = str(text)
    if not any(_unsafe(ch) for ch in s):  # the usual case, checked without building a new string
        return s
    return "".join(ch if not _unsafe(ch) or (keep_newlines and ch == "\n")
                   else ch.encode("unicode_escape").decode("ascii") for ch in s)


_MARKDOWN = str.maketrans({"\\": "\\\\", "|": "\\|", "<": "&lt;", ">": "&gt;", "`": "\\`"})


def markdown_text(text: object) -> str:
    """Plain text for one Markdown table cell or list item: terminal-safe, then Markdown's own characters
    that end a cell, open code or make HTML escaped (emphasis characters stay: ``not_hotdog`` reads as it is)."""
    return terminal_safe(text).translate(_MARKDOWN)
