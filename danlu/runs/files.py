"""Files written whole or not at all (temp file in the same folder, fsync, rename), and the one way to
read a file of a run folder. Every writer in danlu goes through here, and so does every reader of a run
file (the CLI, serve, the studio) and of the few other files danlu trusts, like an API key file.

A run folder is data anyone could have handed over: a ``status.json`` that is a link to ``/dev/zero``
once made ``danlu runs`` grow to 22 GB, a FIFO hung it, and ``plots/x.png -> /etc/passwd`` was served
by the studio. So every read here:

- opens the file without blocking (``O_NONBLOCK``: a FIFO is not waited on) and takes regular files only,
  never a FIFO, socket or device;
- when given the folder the file belongs to, refuses a path that resolves outside it (a link out of the
  run folder, or a linked ``plots/``), and opens the resolved path with ``O_NOFOLLOW``;
- reads at most the bound of the file's kind (``LIMITS``), and names the bound when the file is larger;
- parses YAML through danlu's bounded safe loader (``danlu.safe_yaml``) only.

Any of these is a ``RunError`` "<file> is damaged: <reason>": listings show that run as damaged, every
other command exits 2 with the message.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from danlu.errors import DISK_FULL_ERRNOS, RunError, disk_full


@contextmanager
def atomic_file(path: Path, prefix: str | None = None, suffix: str = ".tmp") -> Iterator[BinaryIO]:
    """A binary file that appears at ``path`` whole or not at all: temp file in the same folder, fsync, rename."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=prefix or f".{path.name}.", suffix=suffix, dir=path.parent)
    except OSError as e:
        if e.errno in DISK_FULL_ERRNOS:
            raise disk_full(path, e) from e
        raise
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno in DISK_FULL_ERRNOS:  # the user's disk, not a bug: exit 2
            raise disk_full(path, e) from e
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_file(path) as f:
        f.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False) + "\n")


def read_json(path: Path) -> Any:
    """A JSON file of a run; a missing, damaged or hostile one (a FIFO, a device, a link out of its folder,
    over its bound) is a RunError that names it."""
    path = Path(path)
    try:
        return read_json_file(path, within=path.parent)
    except FileNotFoundError:
        raise RunError(f"{path} is missing", hint="the run folder is incomplete; train the run again") from None


def save_tensors(path: Path, tensors: dict, metadata: dict[str, str] | None = None) -> None:
    """safetensors, atomically; tensors are made contiguous CPU copies first."""
    from safetensors.torch import save

    clean = {k: v.detach().cpu().clone().contiguous() for k, v in tensors.items()}  # clone: no shared storage
    atomic_write_bytes(path, save(clean, metadata=metadata))


# ---------------------------------------------------------------- reading run files

KIB, MIB = 1 << 10, 1 << 20
# Bounds per kind, far above what danlu writes (a status.json is ~200 bytes, a recipe ~2 KB, a report of
# 1,000 classes ~1 MB, a metrics.jsonl ~500 bytes an epoch) and far below what would hurt.
LIMITS = {
    "status.json": 1 * MIB,
    "recipe.yaml": 1 * MIB,
    "best.yaml": 1 * MIB,
    "metrics.jsonl": 32 * MIB,
    "png": 32 * MIB,
    "json": 64 * MIB,
    "text": 8 * MIB,
    "key": 64 * KIB,
}
MAX_LINE = 1 * MIB  # one metrics.jsonl row
NAME_MAX = 255  # bytes in one file or folder name (Linux, macOS, Windows): longer is no run, not an OS error


PATH_MAX = 4096  # bytes in a whole path (Linux)


def check_path_text(text: str, what: str) -> None:
    """A RunError (exit 2) for a name or path the OS would refuse with an OSError: a NUL byte, a part longer
    than NAME_MAX bytes, or more than PATH_MAX bytes in all."""
    from danlu.printable import terminal_safe

    shown = terminal_safe(text if len(text) <= 80 else text[:80] + "...")
    if "\0" in text:
        raise RunError(f"the {what} '{shown}' holds a NUL character", hint="names and paths cannot hold one")
    raw = os.fsencode(text)
    longest = max((len(part) for part in raw.split(b"/")), default=0)
    if longest > NAME_MAX or len(raw) > PATH_MAX:
        raise RunError(f"the {what} '{shown}' is too long ({len(raw):,} bytes; a name may have at most "
                       f"{NAME_MAX} bytes, a path {PATH_MAX})", hint="give a shorter name or path")


def limit_for(path: Path) -> tuple[str, int]:
    """(the kind, its bound in bytes) of a run file, from its name."""
    name = path.name
    if name in LIMITS:
        return name, LIMITS[name]
    kind = {".png": "png", ".json": "json"}.get(path.suffix.lower(), "text")
    return kind, LIMITS[kind]


def size_text(n: int) -> str:
    return f"{n / MIB:g} MiB" if n >= MIB else f"{n / KIB:g} KiB"


def damaged(path: Path, reason: str, hint: str | None = None) -> RunError:
    return RunError(f"{path} is damaged: {reason}",
                    hint=hint or "restore it from a copy, or train the run again")


def open_run_file(path: str | Path, within: str | Path | None = None) -> tuple[int, os.stat_result]:
    """(an open descriptor, its stat) for a regular file, or a RunError naming what it is instead.
    ``within``: the folder the file must stay inside once links are resolved."""
    path = Path(path)
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | (getattr(os, "O_NOFOLLOW", 0) if within else 0)
    fd = None
    if within is not None and path.parent == Path(within):
        # the usual case, a file right in its folder: opened without following a link, it is inside (no
        # path resolution: listing 500 runs opens 1,500 such files); a link is resolved and checked below
        fd = _open(path, path, flags, links_ok=True)
    if fd is None:
        target = path if within is None else _contained(path, within)
        fd = _open(path, target, flags, links_ok=False)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise damaged(path, f"not a regular file (a {_kind(st.st_mode)})",
                          hint="a run file must be a plain file; remove it, or train the run again")
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def _contained(path: Path, within: str | Path) -> Path:
    """``path`` resolved, or a RunError when that leaves ``within`` (resolved too)."""
    try:
        real, folder = Path(os.path.realpath(path)), Path(os.path.realpath(within))
    except (OSError, ValueError) as e:
        raise damaged(path, f"cannot be resolved ({e})") from None
    if real != folder and folder not in real.parents:
        raise damaged(path, "a link out of the run folder",
                      hint="replace the link by the file itself; danlu reads no file outside a run's folder")
    return real


def _open(path: Path, target: Path, flags: int, links_ok: bool) -> int | None:
    """os.open; None for a link when ``links_ok`` (the caller resolves it), else a RunError naming why not."""
    try:
        return os.open(target, flags)
    except FileNotFoundError:
        raise
    except OSError as e:  # a link where none may be (ELOOP), a name too long, no permission
        if links_ok and e.errno == errno.ELOOP:
            return None
        raise damaged(path, f"cannot be opened ({e.strerror or e})") from None


def check_run_file(path: str | Path, within: str | Path | None = None, bounded: bool = False) -> None:
    """That ``path`` is a regular file (inside ``within``; with ``bounded``, within its kind's bound), before
    a library that opens it blocking and unbounded (safetensors, ONNX Runtime) is handed it, or where a
    listing needs to know the file is sound without parsing it: a FIFO would hang, /dev/zero fill memory."""
    fd, st = open_run_file(path, within)
    os.close(fd)
    kind, bound = limit_for(Path(path))
    if bounded and st.st_size > bound:
        raise _too_big(Path(path), kind, bound)


def read_bytes(path: str | Path, within: str | Path | None = None, limit: int | None = None) -> bytes:
    """The whole file, if it is a regular file of at most ``limit`` bytes (default: its kind's bound)."""
    return b"".join(_bounded_blocks(path, within, limit))


def _bounded_blocks(path: str | Path, within: str | Path | None, limit: int | None) -> Iterator[bytes]:
    """The file a block at a time; past its bound (checked on the size, and on what is read: a file being
    appended can grow under us) a RunError that names the bound."""
    path = Path(path)
    kind, bound = limit_for(path)
    bound = limit if limit is not None else bound
    fd, st = open_run_file(path, within)
    try:
        if st.st_size > bound:
            raise _too_big(path, kind, bound)
        total = 0
        while True:
            block = os.read(fd, min(1 * MIB, bound + 1 - total))
            if not block:
                return
            total += len(block)
            if total > bound:
                raise _too_big(path, kind, bound)
            yield block
    finally:
        os.close(fd)


def read_text(path: str | Path, within: str | Path | None = None, limit: int | None = None,
              errors: str = "strict") -> str:
    data = read_bytes(path, within, limit)
    try:
        return data.decode("utf-8", errors=errors)
    except UnicodeDecodeError as e:
        raise damaged(Path(path), f"not UTF-8 text ({e.reason} at byte {e.start})") from None


def read_json_file(path: str | Path, within: str | Path | None = None) -> Any:
    """A JSON file of a run, bounded as above; not valid JSON is damaged too."""
    data = read_bytes(path, within)
    try:
        return json.loads(data.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise damaged(Path(path), f"not valid JSON ({str(e)[:200]})") from None


def read_yaml_file(path: str | Path, within: str | Path | None = None) -> Any:
    """A YAML file of a run through danlu's bounded safe loader (aliases and depth bounded)."""
    import yaml

    from danlu import safe_yaml

    try:
        return safe_yaml.load(read_text(path, within))
    except (yaml.YAMLError, RecursionError) as e:
        raise damaged(Path(path), f"not valid YAML ({str(e).splitlines()[0][:200] if str(e) else type(e).__name__})"
                      ) from None


def iter_lines(path: str | Path, within: str | Path | None = None, limit: int | None = None
               ) -> Iterator[tuple[int, bytes, bool]]:
    """(line number, line, whether it is the last) of a line file, read a block at a time, so a big
    metrics.jsonl is never one string in memory; the file as a whole is bounded like ``read_bytes``."""
    pending, number = b"", 0
    for block in _bounded_blocks(path, within, limit):
        pending += block
        *lines, pending = pending.split(b"\n")
        if len(pending) > MAX_LINE:
            raise damaged(Path(path), f"line {number + len(lines) + 1} is longer than {size_text(MAX_LINE)}")
        for line in lines:
            number += 1
            yield number, line, False
    if pending:
        yield number + 1, pending, True


def _too_big(path: Path, kind: str, bound: int) -> RunError:
    return damaged(path, f"larger than {size_text(bound)}, the bound for {kind} files",
                   hint="a file this big was not written by danlu; restore it from a copy, or train the run again")


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISSOCK, "socket"), (stat.S_ISDIR, "folder")):
        if test(mode):
            return name
    return "special file"
