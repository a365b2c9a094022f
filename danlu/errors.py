"""User-facing errors: what was wrong, where, and what to do about it.

The CLI prints a DanluError without a traceback and exits with code 2; any other exception is
a bug of ours (exit 1).
"""

from __future__ import annotations

import difflib
import errno
import os
import shutil
from collections.abc import Iterable


class DanluError(Exception):
    """A mistake in the user's input (recipe, data, arguments) with a hint on how to fix it."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class RecipeError(DanluError):
    """The recipe (YAML file or override) is invalid."""


class DataError(DanluError):
    """The data could not be found or read."""


class RunError(DanluError):
    """A run folder is missing or incomplete."""


class DiskFullError(RunError):
    """The disk (or the user's quota) filled up while danlu wrote a file: the user's to free, not a bug."""


DISK_FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def disk_full(path: str | os.PathLike | None, e: OSError | None = None) -> DiskFullError:
    """A DiskFullError saying where space ran out, how much is left, and how to continue."""
    from pathlib import Path

    target = Path(path) if path else Path.cwd() / "a file"  # an append's error carries no file name
    folder = target if target.is_dir() else target.parent
    what = "quota exceeded" if e is not None and e.errno == getattr(errno, "EDQUOT", None) else "no space left"
    try:
        free = f"; {shutil.disk_usage(folder).free / 2**20:,.0f} MiB free now"
    except OSError:
        free = ""
    run = next((d for d in (target, *target.parents) if (d / "recipe.yaml").is_file()), None)
    then = (f"then continue the run: danlu train --resume {run} (if it was training), or run the command again"
            if run else "then run the command again")
    return DiskFullError(f"{what} on the disk holding {folder} while writing {target.name}{free}",
                         hint=f"free space there (df -h {folder}; old runs can go: danlu runs lists them), {then}")


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """"did you mean 'x'? " for the closest choice, or "" when none is close."""
    close = difflib.get_close_matches(str(name), list(choices), n=1)
    return f"did you mean '{close[0]}'? " if close else ""


def unknown_name(kind: str, name: str, choices: Iterable[str]) -> DanluError:
    """Error for an unknown registry name, listing the valid ones and the closest match."""
    choices = sorted(choices)
    if len(name) > 200:  # no fuzzy match (difflib on a 10 MB name took seconds) and no echo of it all
        name, close = f"{name[:80]}... ({len(name):,} characters)", ""
    else:
        close = did_you_mean(name, choices)
    return DanluError(f"unknown {kind} '{name}'", hint=f"{close}valid {kind}s: {', '.join(choices)}")
