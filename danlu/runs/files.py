"""Files written whole or not at all (temp file in the same folder, fsync, rename), and JSON read with a
message that names the damaged file. Every writer in danlu goes through here."""

from __future__ import annotations

import json
import os
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
    """A JSON file of a run; a damaged one is a RunError that names it."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{path} is missing", hint="the run folder is incomplete; train the run again") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunError(f"{path} is damaged: not valid JSON ({e})",
                       hint="restore it from a copy, or train the run again") from None


def save_tensors(path: Path, tensors: dict, metadata: dict[str, str] | None = None) -> None:
    """safetensors, atomically; tensors are made contiguous CPU copies first."""
    from safetensors.torch import save

    clean = {k: v.detach().cpu().clone().contiguous() for k, v in tensors.items()}  # clone: no shared storage
    atomic_write_bytes(path, save(clean, metadata=metadata))
