"""Folders of class subfolders (ImageFolder layout): scanning them, and THE image decoding function.

decode_image is the single definition of image preprocessing (mode conversion, EXIF orientation,
resize) shared by training, the slow loader and prediction; changing it changes what models see.
"""

from __future__ import annotations

import io
import mmap
import os
import sys
import threading
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from danlu.errors import DataError

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm",
     ".pnm"}
)

# Folder name (lower case) -> split name. Anything else next to them is reported in `skipped`.
_SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
_SPLIT_ORDER = ("train", "val", "test")

# Bump when decode_image's output changes for the same file, and put it in cache fingerprints,
# so that cached decoded datasets are rebuilt instead of silently mixing two preprocessing definitions.
DECODE_VERSION = 1


@dataclass
class ImageFolderLayout:
    """What scan_image_folder found: classes (from train), samples per split, and what it left out."""

    root: Path
    classes: list[str]
    splits: dict[str, list[tuple[Path, int]]]
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    hidden: int = 0  # hidden files/folders (.DS_Store, ._x.jpg, .git) ignored without a report


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _list_dir(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError as e:
        raise DataError(f"cannot read folder {folder}: {e.strerror or e}") from None


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows symlinks, like ImageFolder
    except OSError:
        return False


def _is_file(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file()  # a regular file, through links; no pipes, sockets or devices
    except OSError:
        return False


class Scanner:
    def __init__(self) -> None:
        self.skipped: list[tuple[Path, str]] = []
        self.hidden = 0

    def images_under(self, folder: Path) -> list[Path]:
        """All image files below folder (recursively, sorted); other files go to skipped."""
        found: list[str] = []  # sorted as strings, then made Paths: cheaper than sorting Path objects
        top = os.path.realpath(folder)
        seen: set[str] = set()
        stack = [folder]
        while stack:
            current = stack.pop()
            real = os.path.realpath(current)
            if real in seen:  # a symlink loop
                continue
            if current != folder and (top == real or top.startswith(real + os.sep)):
                # a link back up to a folder holding this class (and the others, and test/): never inside it
                self.skipped.append((Path(current), "a link to a parent folder"))
                continue
            seen.add(real)
            subdirs = []
            for entry in _list_dir(current):
                if _is_hidden(entry.name):
                    self.hidden += 1
                elif _is_dir(entry):
                    subdirs.append(Path(entry.path))
                elif entry.is_symlink() and not os.path.exists(entry.path):
                    self.skipped.append((Path(entry.path), "a broken link"))
                elif not _is_file(entry):  # a FIFO named x.png would block the reader forever
                    self.skipped.append((Path(entry.path), "not a regular file (a named pipe, socket or device)"))
                elif os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS:
                    found.append(entry.path)
                else:
                    ext = os.path.splitext(entry.name)[1] or "no extension"
                    self.skipped.append((Path(entry.path), f"not an image file ({ext})"))
            stack.extend(reversed(subdirs))
        found.sort()
        return [Path(p) for p in found]

    def class_dirs(self, split_dir: Path) -> dict[str, Path]:
        """Class name -> folder for the class folders of one split; loose files are reported."""
        classes: dict[str, Path] = {}
        for entry in _list_dir(split_dir):
            if _is_hidden(entry.name):
                self.hidden += 1
            elif _is_dir(entry):
                classes[entry.name] = Path(entry.path)
            else:
                self.skipped.append((Path(entry.path), "not inside a class folder"))
        return classes


def scan_image_folder(root: str | os.PathLike) -> ImageFolderLayout:
    """Scan root/{train,val,test}/<class>/* (or root/<class>/* as a single split 'all').

    Class indices are the sorted class folder names of the train split (ImageFolder's convention).
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(
            f"image folder {root} does not exist" if not root.exists() else f"{root} is not a folder",
            hint="point the recipe's data path at a folder with train/<class>/ (and val/ or test/) "
            "subfolders, or directly at <class>/ subfolders",
        )
    scan = Scanner()
    split_dirs: dict[str, Path] = {}
    others: list[os.DirEntry] = []
    for entry in _list_dir(root):
        if _is_hidden(entry.name):
            scan.hidden += 1
            continue
        split = _SPLIT_NAMES.get(entry.name.lower()) if _is_dir(entry) else None
        if split is None:
            others.append(entry)
        elif split in split_dirs:
            raise DataError(
                f"{root} has two folders for the {split} split: {split_dirs[split].name}/ and {entry.name}/",
                hint="keep one of them (train, val/valid/validation, test; case does not matter)",
            )
        else:
            split_dirs[split] = Path(entry.path)

    if split_dirs and "train" not in split_dirs:
        found = ", ".join(f"{p.name}/" for p in split_dirs.values())
        dirs = [e.name for e in others if _is_dir(e)]
        raise DataError(
            f"{root} has {found} but no train/ folder",
            hint=(f"rename the training folder to train/ (other folders here: {', '.join(d + '/' for d in dirs)})"
                  if dirs else "add train/<class>/ folders with the training images"),
        )
    if split_dirs:
        for entry in others:
            if _is_dir(entry):
                reason = "not a split folder (expected train, val or test)"
            else:
                reason = "not inside a split folder"
            scan.skipped.append((Path(entry.path), reason))
        per_split = {s: scan.class_dirs(split_dirs[s]) for s in _SPLIT_ORDER if s in split_dirs}
    else:
        per_split = {"all": scan.class_dirs(root)}

    if "train" in per_split:
        classes = sorted(per_split["train"])
        extra = {s: sorted(set(c) - set(classes)) for s, c in per_split.items() if s != "train"}
        for split, names in extra.items():
            if names:
                raise DataError(
                    f"{split_dirs[split]} has class folders that are not in {split_dirs['train']}: "
                    f"{', '.join(names)}",
                    hint="every class must have training images; add them to train/ or remove the folders "
                    "(check for typos and different capitalization)",
                )
    else:
        classes = sorted({c for cs in per_split.values() for c in cs})
    splits: dict[str, list[tuple[Path, int]]] = {}
    for split, class_dirs in per_split.items():
        split_dir = split_dirs.get(split, root)
        if not class_dirs:
            raise DataError(
                f"{split_dir} has no class folders",
                hint=f"put the images in one folder per class: {split_dir}/<class name>/<image files>",
            )
        samples: list[tuple[Path, int]] = []
        for name in sorted(class_dirs):
            images = scan.images_under(class_dirs[name])
            if not images:
                raise DataError(
                    f"class folder {class_dirs[name]} contains no images "
                    f"(extensions read: {' '.join(sorted(IMAGE_EXTENSIONS))})",
                    hint="add images to it or delete the folder",
                )
            label = classes.index(name)
            samples.extend((p, label) for p in images)
        splits[split] = samples
    if len(classes) == 1:
        only = next(cs[classes[0]] for cs in per_split.values() if classes[0] in cs)
        inner = [e.name for e in _list_dir(only) if _is_dir(e) and not _is_hidden(e.name)]
        raise DataError(
            f"{root} has one class folder ({classes[0]}/); classification needs at least two",
            hint=(f"the data seems to be one level down: data.root={only}" if inner
                  else "add a folder per class: <root>/train/<class name>/<images>"),
        )
    return ImageFolderLayout(
        root=root, classes=classes, splits=splits, skipped=scan.skipped, hidden=scan.hidden
    )


# ----------------------------------------------------------------------------------------------------------
# Decoding.


_ORIENTATION = 0x0112
_WHITE = (255, 255, 255, 255)


def _to_8bit(img: Image.Image) -> Image.Image:
    """16/32-bit and float images -> 'L'. PIL's own convert clips 16-bit values at 255 instead of scaling."""
    arr = np.asarray(img)
    if img.mode.startswith("I;16"):
        out = (arr.astype(np.uint32) >> 8).astype(np.uint8)
    else:  # 'I' (int32) or 'F': 8-bit data stored wide stays as is, 16-bit range is scaled down
        arr = arr.astype(np.float64)
        hi = float(arr.max()) if arr.size else 0.0
        if hi > 255:
            scale = 65535.0 if hi <= 65535 else hi
            arr = arr * (255.0 / scale)
        out = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    return Image.fromarray(out, mode="L")


def _convert(img: Image.Image, channels: int) -> Image.Image:
    """Any PIL mode -> 'RGB' or 'L'; transparency is composited on white."""
    target = "RGB" if channels == 3 else "L"
    mode = img.mode
    if mode == target:
        return img
    if mode.startswith("I") or mode == "F":
        img = _to_8bit(img)
        return img if target == "L" else img.convert("RGB")
    has_alpha = mode in ("RGBA", "RGBa", "LA", "La", "PA") or (mode == "P" and "transparency" in img.info)
    if has_alpha:
        # Covers premultiplied modes and palettes with a transparent entry; PIL cannot go La -> RGBA directly.
        rgba = (img.convert("LA") if mode == "La" else img).convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, _WHITE), rgba).convert("RGB")
    elif mode not in ("RGB", "L", "1", "P"):  # CMYK, YCbCr, LAB, HSV
        img = img.convert("RGB")
    return img if img.mode == target else img.convert(target)


def _from_array(arr: np.ndarray) -> Image.Image:
    """An in-memory image (e.g. sent to a predictor) in HWC or HW layout, uint8 (or uint16 grayscale)."""
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    ok_shape = arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))
    ok_dtype = arr.dtype == np.uint8 or (arr.dtype == np.uint16 and arr.ndim == 2)
    if not (ok_shape and ok_dtype):
        raise DataError(
            f"image array must be uint8 with shape [H, W], [H, W, 1], [H, W, 3] or [H, W, 4]; "
            f"got {arr.dtype} {list(arr.shape)}",
            hint="scale pixel values to 0..255 and convert with .astype('uint8'), channels last",
        )
    return Image.fromarray(np.ascontiguousarray(arr))


def decode_image(
    source: str | os.PathLike | bytes | np.ndarray | Image.Image,
    size: tuple[int, int] | None = None,
    channels: int = 3,
    max_pixels: int | None = None,
) -> np.ndarray:
    """Decode one image to uint8 [H, W, C]: first frame, EXIF-upright, RGB or L, resized to size (H, W).

    ``max_pixels`` refuses larger encoded images from their header, before decoding: a small PNG can
    unpack to gigabytes (the server sets it; a user's own files are trusted).

    source is a file path, the encoded bytes, a PIL image or a uint8 array. Resizing is PIL bilinear,
    antialiased when shrinking. JPEGs over 4x the target are decoded at a reduced DCT scale (never below
    2x the target) first: ~3x faster for 12-megapixel photos at 224x224, and within ~1 gray level on
    average of a full-size decode. Deterministic for a given Pillow/libjpeg build.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if isinstance(source, np.ndarray):
        return _finish(_from_array(source), size, channels)
    if isinstance(source, Image.Image):
        return _finish(source, size, channels)
    fp = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    with Image.open(fp) as img:
        if max_pixels is not None and img.width * img.height > max_pixels:
            raise DataError(f"the image is {img.width}x{img.height} pixels, more than {max_pixels:,}",
                            hint="send a smaller image")
        if getattr(img, "n_frames", 1) > 1:
            img.seek(0)
        reduce_jpeg_decode(img, size)
        return _finish(img, size, channels)


def reduce_jpeg_decode(img: Image.Image, size: tuple[int, int] | None) -> None:
    """Let a JPEG decode at a reduced DCT scale when it is far larger than size (H, W); img.size then says
    what will be decoded (the server costs images from it before decoding)."""
    if size is not None and img.format == "JPEG":
        side = 2 * max(size)
        img.draft(None, (side, side))  # orientation-agnostic: both sides stay >= 2x the larger target


def _finish(img: Image.Image, size: tuple[int, int] | None, channels: int) -> np.ndarray:
    orientation = img.getexif().get(_ORIENTATION, 1)
    out = ImageOps.exif_transpose(img) if orientation in (2, 3, 4, 5, 6, 7, 8) else img
    out = _convert(out, channels)
    if size is not None and out.size != (size[1], size[0]):
        out = out.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    arr = np.array(out, dtype=np.uint8)  # np.array forces the decode while the file is still open
    return arr[:, :, None] if arr.ndim == 2 else arr


def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _decode_one(path: Path, size: tuple[int, int] | None, channels: int) -> np.ndarray | str:
    """The decoded image, or the reason it could not be decoded."""
    try:
        return decode_image(path, size, channels)
    except Exception as e:  # noqa: BLE001 - any decoder failure means a bad file, reported by path
        return f"{type(e).__name__}: {e}"


def _decode_range_threads(
    paths: Sequence[Path], start: int, stop: int, size: tuple[int, int] | None, channels: int,
    out: np.ndarray | None, loose: list[np.ndarray | None], errors: dict[int, str],
) -> None:
    for i in range(start, stop):
        got = _decode_one(paths[i], size, channels)
        if isinstance(got, str):
            errors[i] = got
        elif out is not None:
            out[i] = got
        else:
            loose[i] = got


# What forked workers decode: set just before the pool forks them, so they inherit it (no pickling of
# paths, and results are written straight into shared memory).
_FORK_JOB: tuple[Sequence[Path], tuple[int, int], int, np.ndarray] | None = None
_FORK_LOCK = threading.Lock()  # one forked decode at a time per process: _FORK_JOB is global


def _decode_range_forked(start: int, stop: int) -> dict[int, str]:
    assert _FORK_JOB is not None
    paths, size, channels, out = _FORK_JOB
    errors: dict[int, str] = {}
    for i in range(start, stop):
        got = _decode_one(paths[i], size, channels)
        if isinstance(got, str):
            errors[i] = got
        else:
            out[i] = got
    return errors


def _use_processes(n: int, size: tuple[int, int] | None, workers: int) -> bool:
    # fork only: spawn/forkserver re-import the caller's main script and take seconds to start. Never from a
    # daemonic process (e.g. a DataLoader worker), which may not have children.
    import multiprocessing

    return (
        sys.platform == "linux" and size is not None and workers > 1 and n >= _MIN_FOR_PROCESSES
        and not multiprocessing.current_process().daemon
    )


_MIN_FOR_PROCESSES = 1000


def _decode_forked(
    paths: Sequence[Path], size: tuple[int, int], channels: int, workers: int, bounds: list[tuple[int, int]],
) -> tuple[np.ndarray, dict[int, str]]:
    """Decode in forked worker processes writing into an anonymous shared mapping.

    MAP_SHARED|MAP_ANONYMOUS memory is inherited by the children and, unlike /dev/shm segments, not capped
    by a small /dev/shm (Docker's default is 64 MB).
    """
    global _FORK_JOB
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    n = len(paths)
    nbytes = n * size[0] * size[1] * channels
    buf = mmap.mmap(-1, max(nbytes, 1))
    out = np.frombuffer(buf, dtype=np.uint8, count=nbytes).reshape(n, size[0], size[1], channels)
    errors: dict[int, str] = {}
    with _FORK_LOCK:
        _FORK_JOB = (paths, size, channels, out)
        try:
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
                for job in [pool.submit(_decode_range_forked, s, e) for s, e in bounds]:
                    errors.update(job.result())
        finally:
            _FORK_JOB = None
    return out, errors


def decode_images(
    paths: Sequence[str | os.PathLike],
    size: tuple[int, int] | None,
    channels: int = 3,
    workers: int | None = None,
    processes: bool | None = None,
) -> tuple[np.ndarray, list[int], list[tuple[Path, str]]]:
    """Decode many images in parallel into one uint8 [N_ok, H, W, C] array.

    Unreadable, corrupt or truncated files do not stop the run: they are left out and returned as
    (path, reason) failures; ok_indices maps each output row back to its position in paths. With
    size=None all images must share the first good image's size (others become failures).

    Parallelism (processes=None picks): for small images ~85% of PIL's time is Python-level header
    parsing under the GIL, so threads barely scale, while forked processes do. CIFAR-10 test set (10k
    JPEGs -> 32x32) on this 2-core box with one other job running: 1 thread ~3,900-4,150 img/s, 2 threads
    ~3,650-3,750 img/s, 2 processes ~6,950-7,100 img/s; CPU time per image is the same either way (~0.28 ms
    measured under load), so only processes use the second core. Hymenoptera (500x375 JPEGs -> 224x224):
    1 thread 161 img/s, 2 threads 241 img/s (decoding releases the GIL). Hence: forked processes writing
    into shared memory for >= 1000 images on Linux, threads otherwise and as the fallback.
    """
    paths = [Path(p) for p in paths]
    n = len(paths)
    workers = _default_workers() if workers is None else max(1, workers)
    if processes is None:
        processes = _use_processes(n, size, workers)
    per_task = 1024 if processes else 256
    chunk = max(1, min(per_task, -(-n // (workers * 8)))) if n else 1
    bounds = [(s, min(s + chunk, n)) for s in range(0, n, chunk)]

    out: np.ndarray | None = None
    errors: dict[int, str] = {}
    loose: list[np.ndarray | None] = [None] * n if size is None else []
    if processes and size is not None and len(bounds) > 1:
        from concurrent.futures.process import BrokenProcessPool

        try:
            out, errors = _decode_forked(paths, size, channels, workers, bounds)
        except (OSError, BrokenProcessPool) as e:
            warnings.warn(f"parallel image decoding in processes failed ({e}); using threads", stacklevel=2)
            out, errors = None, {}
    if out is None:
        if size is not None:
            out = np.zeros((n, size[0], size[1], channels), dtype=np.uint8)
        args = (size, channels, out, loose, errors)
        if workers == 1 or len(bounds) <= 1:
            for s, e in bounds:
                _decode_range_threads(paths, s, e, *args)
        else:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="danlu-decode") as pool:
                for job in [pool.submit(_decode_range_threads, paths, s, e, *args) for s, e in bounds]:
                    job.result()

    if size is None:  # stack same-sized images; the first good one sets the size
        first = next((a for a in loose if a is not None), None)
        shape = first.shape if first is not None else (0, 0, channels)
        for i, a in enumerate(loose):
            if a is not None and a.shape != shape:
                got, want = f"{a.shape[1]}x{a.shape[0]}", f"{shape[1]}x{shape[0]}"
                errors[i] = f"size {got} differs from {want} (give a size to resize)"
        ok = [i for i in range(n) if i not in errors]
        images = np.stack([loose[i] for i in ok]) if ok else np.zeros((0, *shape), dtype=np.uint8)
    else:
        assert out is not None
        ok = [i for i in range(n) if i not in errors]
        images = out if len(ok) == n else out[ok]
    failures = [(paths[i], errors[i]) for i in sorted(errors)]
    return images, ok, failures
