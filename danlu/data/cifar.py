"""CIFAR-10: the binary and python batch formats, locating them, and downloading the binary tarball.

The python batches are pickles, and unpickling runs code named in the file, so they go through a
restricted unpickler that builds numpy arrays itself and refuses every other global.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from danlu.data.idx import download_verified
from danlu.errors import DataError

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

BINARY_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
BINARY_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
PYTHON_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"

_BIN_DIR = "cifar-10-batches-bin"
_PY_DIR = "cifar-10-batches-py"
_TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
_TEST_BATCHES = ["test_batch"]
_RECORD = 1 + 3 * 32 * 32  # one label byte, then 1024 red, 1024 green, 1024 blue

_HINT_GET = (
    f"download {BINARY_URL} (or the python version {PYTHON_URL}) and extract it there, "
    "set data.download: true to fetch it, or point the recipe at an image-folder copy "
    "(train/<class>/*.png and test/<class>/*.png)"
)


@dataclass(frozen=True)
class Cifar10Source:
    """Where CIFAR-10 was found. kind 'imagefolder' means: read it with danlu.data.imagefolder."""

    kind: Literal["bin", "py", "imagefolder"]
    path: Path


def _batch_names(kind: str) -> list[str]:
    suffix = ".bin" if kind == "bin" else ""
    return [n + suffix for n in _TRAIN_BATCHES + _TEST_BATCHES]


def _has_any_batch(folder: Path, kind: str) -> bool:
    return any((folder / n).is_file() for n in _batch_names(kind))


def _child_ci(folder: Path, name: str) -> Path | None:
    """The subfolder of folder called name, ignoring case (Train/, TEST/ ...)."""
    try:
        return next((p for p in sorted(folder.iterdir()) if p.name.lower() == name and p.is_dir()), None)
    except OSError:
        return None


def _looks_like_image_folder(root: Path) -> bool:
    train, test = _child_ci(root, "train"), _child_ci(root, "test")
    if train is None or test is None:
        return False
    try:
        return any(p.is_dir() and not p.name.startswith(".") for p in train.iterdir())
    except OSError:
        return False


def find_cifar10(root: str | os.PathLike) -> Cifar10Source:
    """Find CIFAR-10 at root: a batches folder itself, a folder containing one, or an image-folder copy.

    The binary version wins over the python one (no unpickling, and it is faster to read).
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"CIFAR-10 data folder {root} does not exist", hint=_HINT_GET)
    for kind, sub in (("bin", _BIN_DIR), ("py", _PY_DIR)):
        for folder in (root, root / sub):
            if folder.is_dir() and _has_any_batch(folder, kind):
                missing = [n for n in _batch_names(kind) if not (folder / n).is_file()]
                if missing:
                    raise DataError(
                        f"CIFAR-10 folder {folder} is incomplete: missing {', '.join(missing)}",
                        hint="the extraction was probably interrupted; extract the archive again, or "
                        "delete the folder and set data.download: true",
                    )
                return Cifar10Source(kind, folder)  # type: ignore[arg-type]
    if _looks_like_image_folder(root):
        return Cifar10Source("imagefolder", root)
    raise DataError(
        f"no CIFAR-10 data in {root}: expected {_BIN_DIR}/ (data_batch_1.bin ... test_batch.bin), "
        f"{_PY_DIR}/ (data_batch_1 ... test_batch), those files directly, or train/ and test/ class folders",
        hint=_HINT_GET,
    )


def _check_labels(labels: np.ndarray, path: Path) -> None:
    if len(labels) and int(labels.max()) > 9:
        raise DataError(
            f"{path} has label {int(labels.max())}, but CIFAR-10 labels are 0..9",
            hint="this is not a CIFAR-10 batch (CIFAR-100 has a different layout); use the CIFAR-10 files",
        )


def _chw_to_hwc(flat: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(flat.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def read_binary_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One .bin batch -> (uint8 [N,32,32,3], int64 [N])."""
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise DataError(f"cannot read CIFAR-10 batch {path}: {e.strerror or e}") from None
    if raw.size == 0 or raw.size % _RECORD:
        raise DataError(
            f"{path} is not a CIFAR-10 binary batch: {raw.size:,} bytes is not a multiple of the "
            f"{_RECORD}-byte record size (truncated download?)",
            hint="extract the archive again, or delete the folder and set data.download: true",
        )
    records = raw.reshape(-1, _RECORD)
    labels = records[:, 0].astype(np.int64)
    _check_labels(labels, path)
    return _chw_to_hwc(records[:, 1:]), labels


# ----------------------------------------------------------------------------------------------------------
# Restricted unpickling of the python batches.


class _Refused(Exception):
    pass


class _DtypeSpec:
    """Stands in for numpy.dtype during unpickling; records what the pickle says, runs nothing."""

    def __init__(self, spec: Any = None, *_args: Any) -> None:
        self.spec = spec.decode("latin1") if isinstance(spec, bytes) else spec
        self.byteorder = "|"

    def __setstate__(self, state: Any) -> None:
        # numpy's dtype state: (version, byteorder, subarray, names, fields, elsize, alignment, flags)
        if isinstance(state, tuple) and len(state) >= 2:
            bo = state[1]
            self.byteorder = bo.decode("latin1") if isinstance(bo, bytes) else str(bo)

    def to_numpy(self) -> np.dtype:
        # Only plain numeric dtypes: no objects, no structured records.
        if not isinstance(self.spec, str) or not re.fullmatch(r"[<>|=]?[uifb][1248]", self.spec):
            raise _Refused(f"array dtype {self.spec!r}")
        dt = np.dtype(self.spec)
        return dt.newbyteorder(self.byteorder) if self.byteorder in "<>" else dt


class _ArraySpec:
    """Stands in for numpy.ndarray during unpickling; decoded into a real array by _materialize."""

    def __init__(self) -> None:
        self.shape: tuple[int, ...] = ()
        self.dtype: _DtypeSpec | None = None
        self.fortran = False
        self.data: bytes = b""

    def __setstate__(self, state: Any) -> None:
        # ndarray state: (version, shape, dtype, is_fortran, raw bytes); version 1, or 4-tuple without it.
        if isinstance(state, tuple) and len(state) == 5:
            state = state[1:]
        if not (isinstance(state, tuple) and len(state) == 4):
            raise _Refused("unexpected ndarray state")
        shape, dtype, fortran, data = state
        if isinstance(data, str):  # Python 2 str decoded with encoding='latin1'
            data = data.encode("latin1")
        if (
            not isinstance(dtype, _DtypeSpec)
            or not isinstance(data, (bytes, bytearray))
            or not isinstance(shape, (tuple, list))
            or not all(isinstance(d, int) and d >= 0 for d in shape)
        ):
            raise _Refused("unexpected ndarray state")
        self.shape, self.dtype, self.fortran, self.data = tuple(shape), dtype, bool(fortran), bytes(data)

    def to_numpy(self) -> np.ndarray:
        assert self.dtype is not None
        dt = self.dtype.to_numpy()
        count = int(np.prod(self.shape, dtype=np.int64))
        if count * dt.itemsize != len(self.data):
            raise _Refused(f"array data has {len(self.data)} bytes for shape {self.shape}")
        arr = np.frombuffer(self.data, dtype=dt, count=count)
        return arr.reshape(self.shape, order="F" if self.fortran else "C")


class _NdarrayMarker:
    """What the pickle gets for the global numpy.ndarray: only usable as the first argument below."""


def _reconstruct(cls: Any, _shape: Any = None, _typecode: Any = None) -> _ArraySpec:
    if cls is not _NdarrayMarker:
        raise _Refused("_reconstruct of something other than numpy.ndarray")
    return _ArraySpec()


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> _ArraySpec:
    """Protocol-5 pickles of arrays (e.g. a batch re-saved by a recent Python)."""
    if not isinstance(buf, (bytes, bytearray)):
        raise _Refused("_frombuffer with unexpected arguments")
    spec = _ArraySpec()
    spec.__setstate__((shape, dtype, order == "F", buf))
    return spec


def _codecs_encode(text: Any, encoding: Any = "utf-8") -> bytes:
    """Python 3 writes bytes as _codecs.encode(str, 'latin1') in protocol 2; only that use is admitted."""
    if not isinstance(text, str) or str(encoding).lower().replace("-", "") != "latin1":
        raise _Refused("_codecs.encode with unexpected arguments")
    return text.encode("latin1")


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): _NdarrayMarker,
    ("numpy", "dtype"): _DtypeSpec,
    ("_codecs", "encode"): _codecs_encode,
}


class _CifarUnpickler(pickle.Unpickler):
    """Admits only the globals a CIFAR batch needs, each replaced by a harmless stand-in above."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise _Refused(f"global {module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise _Refused("persistent id")


def _materialize(obj: Any) -> Any:
    if isinstance(obj, _ArraySpec):
        return obj.to_numpy()
    if isinstance(obj, dict):
        return {_materialize(k): _materialize(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_materialize(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_materialize(v) for v in obj)
    if isinstance(obj, (_DtypeSpec, _NdarrayMarker)) or obj is _NdarrayMarker:
        raise _Refused("stray numpy object")
    return obj


def safe_unpickle(data: bytes, path: Path) -> Any:
    """Unpickle a CIFAR-style batch without running anything named in it."""
    try:
        # encoding='bytes' keeps Python 2 str as bytes (so b'data' keys), as the CIFAR page says to load it.
        obj = _CifarUnpickler(io.BytesIO(data), encoding="bytes").load()
        return _materialize(obj)
    except _Refused as e:
        raise DataError(
            f"{path} is not a CIFAR-10 pickle and was refused for safety (it asks for {e})",
            hint="only load pickles from a source you trust; the official CIFAR-10 python batches contain "
            f"only a dict of labels and a uint8 array. Or use the binary version: {BINARY_URL}",
        ) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, UnicodeDecodeError, OverflowError, MemoryError, RecursionError) as e:
        raise DataError(
            f"{path} is not a readable CIFAR-10 python batch (truncated or corrupt): {type(e).__name__}: {e}",
            hint="extract the archive again, or delete the folder and set data.download: true",
        ) from None


def _key(d: dict, name: str) -> Any:
    for k in (name.encode(), name):
        if k in d:
            return d[k]
    return None


def read_python_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch -> (uint8 [N,32,32,3], int64 [N])."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read CIFAR-10 batch {path}: {e.strerror or e}") from None
    obj = safe_unpickle(data, path)
    pixels = _key(obj, "data") if isinstance(obj, dict) else None
    labels = _key(obj, "labels") if isinstance(obj, dict) else None
    if not isinstance(pixels, np.ndarray) or labels is None:
        raise DataError(
            f"{path} is not a CIFAR-10 python batch: expected a dict with 'data' and 'labels'",
            hint="CIFAR-100 batches use 'fine_labels' and are not CIFAR-10; check the folder",
        )
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if pixels.dtype != np.uint8 or pixels.ndim != 2 or pixels.shape[1] != 3072 or len(pixels) != len(labels):
        raise DataError(
            f"{path}: expected uint8 data [N, 3072] and N labels, got {pixels.dtype} {list(pixels.shape)} "
            f"and {len(labels)} labels",
            hint="the file is damaged or not a CIFAR-10 batch",
        )
    _check_labels(labels, path)
    if len(labels) and labels.min() < 0:
        raise DataError(f"{path} has negative labels", hint="the file is damaged or not a CIFAR-10 batch")
    return _chw_to_hwc(pixels), labels


def load_cifar10_batches(source: Cifar10Source) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read the five train batches and the test batch of a 'bin' or 'py' source."""
    if source.kind == "imagefolder":
        raise ValueError("an image-folder copy of CIFAR-10 is read with danlu.data.imagefolder")
    read = read_binary_batch if source.kind == "bin" else read_python_batch
    suffix = ".bin" if source.kind == "bin" else ""
    out = {}
    for split, names in (("train", _TRAIN_BATCHES), ("test", _TEST_BATCHES)):
        parts = [read(source.path / (n + suffix)) for n in names]
        out[split] = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    return out


# ----------------------------------------------------------------------------------------------------------
# Download.


def _safe_extract(archive: Path, dest: Path) -> None:
    """Extract a tar into dest, refusing members that are links, devices or paths escaping dest."""
    import tarfile

    dest_resolved = dest.resolve()
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for m in members:
                target = (dest_resolved / m.name).resolve()
                if not (m.isfile() or m.isdir()) or (
                    target != dest_resolved and dest_resolved not in target.parents
                ):
                    raise DataError(
                        f"refusing to extract {archive}: member '{m.name}' is a link or escapes {dest}",
                        hint=f"the archive is not the official one; delete it and download {BINARY_URL}",
                    )
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: a second, standard line of defence
                tar.extractall(dest, members=members, filter="data")
            else:  # pragma: no cover
                tar.extractall(dest, members=members)
    except (tarfile.TarError, EOFError) as e:
        raise DataError(
            f"{archive} is not a readable tar archive: {e}", hint="delete it and download it again"
        ) from None


def download_cifar10(dest: str | os.PathLike) -> Cifar10Source:
    """Fetch the binary tarball (md5-checked), extract it safely into dest, and return the source."""
    dest = Path(dest).expanduser()
    final = dest / _BIN_DIR
    if final.is_dir() and all((final / n).is_file() for n in _batch_names("bin")):
        return Cifar10Source("bin", final)
    archive = download_verified([BINARY_URL], dest / "cifar-10-binary.tar.gz", BINARY_MD5)
    # Extract next to the final folder, then rename: a half-extracted folder never has the final name.
    staging = Path(tempfile.mkdtemp(prefix=".cifar-extract-", dir=dest))
    try:
        _safe_extract(archive, staging)
        if not (staging / _BIN_DIR).is_dir():
            raise DataError(f"{archive} does not contain {_BIN_DIR}/", hint="delete it and download again")
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging / _BIN_DIR, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    archive.unlink(missing_ok=True)  # 163 MB; the extracted batches are all that is read
    return find_cifar10(final)
