"""danlu's notes and warnings through Python's ``logging`` (logger ``danlu``), so library users can route
or silence them; the CLI shows them on stderr, fewer with ``--quiet``, more with ``-v`` / ``-vv``.

Progress lines stay plain stderr output (they are a display, not a log); the notes printed beside them are
also logged, as ``danlu.training.progress``, which the CLI's own handler leaves out (the terminal has them once).
"""

from __future__ import annotations

import logging
import sys

LOGGER = "danlu"


class _NotProgress(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith("danlu.training.progress")


def configure_cli(verbosity: int = 0, quiet: bool = False) -> None:
    """One stderr handler on the ``danlu`` logger: warnings by default, errors only with --quiet,
    info with -v, debug with -vv. Called once per CLI process."""
    level = logging.ERROR if quiet else {0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    log = logging.getLogger(LOGGER)
    for h in list(log.handlers):
        if getattr(h, "danlu_cli", False):
            log.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.danlu_cli = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_NotProgress())
    log.addHandler(handler)
    log.setLevel(level)
