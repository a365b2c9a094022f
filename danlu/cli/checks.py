"""Checks of the CLI's settings and output paths, before any work: a bad one is a DanluError (exit 2)
that names the flag, the bound or the path, never an OSError traceback or a run left half-done."""

from __future__ import annotations

import os
from pathlib import Path

from danlu.errors import DanluError

# Paths under these are the kernel's, not files a user means to write (/proc/version, /sys/...).
KERNEL_TREES = ("/proc", "/sys", "/dev")


def bounded(flag: str, value: int | None, low: int, high: int) -> None:
    """``low <= value <= high`` (None: not given), else a DanluError naming the flag and the bounds."""
    if value is not None and not low <= value <= high:
        raise DanluError(f"{flag} must be between {low} and {high}, got {value}")


def output_file(path: str | Path, flag: str) -> Path:
    """A file danlu may write: not a folder, not a device or kernel file, in a folder that exists or can
    be made, with a name the OS takes."""
    path = _checked_text(path, flag)
    if path.is_dir():
        raise DanluError(f"{flag} {path} is a folder, not a file", hint=f"give a file name, e.g. {path / 'out.png'}")
    if path.exists() and not path.is_file() or _in_kernel_tree(path):
        raise DanluError(f"{flag} {path} is not a regular file danlu can write", hint="give a path in your own folders")
    _writable_folder(path.parent, flag, path)
    return path


def output_folder(path: str | Path, flag: str) -> Path:
    """A folder danlu may write into (made later, when there is something to write)."""
    path = _checked_text(path, flag)
    if path.exists() and not path.is_dir():
        raise DanluError(f"{flag} {path} exists and is not a folder", hint="give a folder name, or remove that file")
    if _in_kernel_tree(path):
        raise DanluError(f"{flag} {path} is in {_in_kernel_tree(path)}, not a folder danlu can write",
                         hint="give a path in your own folders")
    _writable_folder(path, flag, path)
    return path


def _checked_text(path: str | Path, flag: str) -> Path:
    from danlu.runs.files import check_path_text

    try:
        check_path_text(str(path), flag)
    except DanluError as e:
        raise DanluError(e.message, hint=e.hint) from None
    return Path(path)


def _in_kernel_tree(path: Path) -> str | None:
    real = os.path.realpath(path)
    return next((t for t in KERNEL_TREES if real == t or real.startswith(t + "/")), None)


def _writable_folder(folder: Path, flag: str, path: Path) -> None:
    """The nearest existing folder at or above ``folder`` is a folder this process may write in."""
    probe = folder.absolute()
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise DanluError(f"{flag} {path}: {probe} is a file, not a folder", hint="give a path in an existing folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise DanluError(f"{flag} {path}: no permission to write in {probe}", hint="give a path in your own folders")


# OS errors about a path the user gave (too long, a folder where a file goes, no permission, a read-only
# or kernel file system): the user's to fix, so exit 2 with the path, not "internal error" and exit 1.
PATH_ERRNOS = frozenset(getattr(__import__("errno"), name) for name in (
    "ENAMETOOLONG", "EISDIR", "ENOTDIR", "EACCES", "EPERM", "EROFS", "ENXIO", "ELOOP"))


def path_error(e: BaseException) -> DanluError | None:
    """A DanluError for an OSError that names a path the user gave; None for anything else."""
    if not isinstance(e, OSError) or e.errno not in PATH_ERRNOS or not e.filename:
        return None
    shown = str(e.filename)
    shown = shown if len(shown) <= 120 else shown[:120] + f"... ({len(shown):,} characters)"
    return DanluError(f"cannot use {shown}: {e.strerror or e}", hint="check the path: a shorter name, a folder you "
                                                                     "can write, a file that is not a folder")
