"""Image datasets → uint8 tensor splits: digits, MNIST, Fashion-MNIST, CIFAR-10 and any image folder.

Decoded pixels are cached under DANLU_CACHE (keyed by the files' stats and the preprocessing), so the
second run of a recipe skips JPEG decoding entirely. Data folders are only ever read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from danlu.data import cache
from danlu.data.locate import download_dir, find_dataset, where_looked
from danlu.data.splits import Splits, carve_splits
from danlu.data.stats import channel_stats, stats_sample
from danlu.errors import DataError
from danlu.recipe import DataConfig
from danlu.schema import Schema

DEFAULT_FOLDER_IMAGE_SIZE = 64  # image folders hold any size; 64 px keeps small CNNs fast on a CPU
# A named dataset found as an image-folder copy keeps its own size: CIFAR-10 read from cifar10-images/ used to
# be decoded at the 64 px folder default, 4x the pixels, which made cifar10-cnn train 3-4x slower per sample
# than a plain loop over 32 px images (issue 16).
NATIVE_IMAGE_SIZE = {"cifar10": 32}


def _nchw(images: np.ndarray) -> np.ndarray:
    """[N,H,W] or [N,H,W,C] uint8 → [N,C,H,W] contiguous."""
    if images.ndim == 3:
        return np.ascontiguousarray(images[:, None])
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2))


def _digits() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """scikit-learn's bundled 8×8 digits, read from its data file: importing sklearn.datasets costs ~1 s."""
    import gzip
    from importlib.util import find_spec

    spec = find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise DataError("the digits data set comes with scikit-learn, which is not installed",
                        hint="pip install scikit-learn")
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
    table = np.loadtxt(gzip.open(path, "rt"), delimiter=",", dtype=np.float32)
    imgs = np.rint(table[:, :64].reshape(-1, 8, 8) * (255.0 / 16.0)).astype(np.uint8)  # values are 0..16
    return {"all": (imgs, table[:, 64].astype(np.int64))}


def _idx(name: str, cfg: DataConfig, data_dir: Path | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from danlu.data import idx

    root = find_dataset(name, cfg.root, data_dir)
    if root is None:
        if not cfg.download:
            raise DataError(
                f"{name} not found (looked in {where_looked(name, data_dir)})",
                hint=(f"put the four IDX files in one of those folders or set data.root=/path/to/{name}; "
                      "or add data.download=true to fetch them (needs internet)"))
        root = download_dir(name)
        idx.download_idx_dataset(root, name)
    files = [p for pair in idx.find_idx_files(root, name).values() for p in pair]

    def build() -> dict[str, np.ndarray]:
        data = idx.load_idx_dataset(root, name)
        return {f"{s}/{k}": arr for s, (x, y) in data.items() for k, arr in (("x", x), ("y", y))}

    # gunzip of the 4 files costs ~0.4 s a run; the cached arrays load in milliseconds
    arrays, _ = cache.load_or_build(name, cache.fingerprint(files), build, mmap=True)
    return {s: (arrays[f"{s}/x"], arrays[f"{s}/y"]) for s in ("train", "test")}


def _cifar(cfg: DataConfig, data_dir: Path | None) -> tuple[dict, Path | None]:
    """CIFAR-10 arrays from the binary or python batches; (None, folder) for an image-folder copy."""
    from danlu.data import cifar

    root = find_dataset("cifar10", cfg.root, data_dir)
    if root is None:
        if not cfg.download:
            raise DataError(
                f"cifar10 not found (looked in {where_looked('cifar10', data_dir)})",
                hint=("put cifar-10-batches-bin (or -py, or an image folder train/<class>/) there, set "
                      "data.root, or add data.download=true (needs internet; source "
                      "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz)"))
        root = download_dir("cifar10")
        cifar.download_cifar10(root)
    found = cifar.find_cifar10(root)
    if found.kind == "imagefolder":
        return {}, found.path
    return cifar.load_cifar10_batches(found), None


def _folder_arrays(root: Path, layout, size: int, channels: int, notes: list[str]):
    """Decode every image of a folder once (cached) → ({split: (images, labels, paths)}, classes)."""
    from danlu.data.imagefolder import DECODE_VERSION, decode_images

    if layout.skipped:
        shown = "; ".join(f"{p} ({why})" for p, why in layout.skipped[:3])
        more = f"; and {len(layout.skipped) - 3} more" if len(layout.skipped) > 3 else ""
        notes.append(f"skipped {len(layout.skipped)} non-image file(s): {shown}{more}")
    files = [p for items in layout.splits.values() for p, _ in items]
    key = cache.fingerprint(files, size=size, channels=channels, root=str(Path(root).resolve()),
                            decode_version=DECODE_VERSION)

    def build() -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        failures_all = []
        for split, items in layout.splits.items():
            arr, ok, failures = decode_images([p for p, _ in items], (size, size), channels)
            failures_all.extend(failures)
            out[f"{split}/x"] = arr
            out[f"{split}/y"] = np.array([items[i][1] for i in ok], np.int64)
            out[f"{split}/ok"] = np.array(ok, np.int64)
        out["failed"] = np.array([f"{p}\t{why}" for p, why in failures_all], dtype=np.str_)
        return out

    arrays, _ = cache.load_or_build("imagefolder", key, build)
    failed = [str(s) for s in arrays.get("failed", np.array([], dtype=np.str_)).tolist()]
    if failed:
        notes.append(f"skipped {len(failed)} unreadable image(s): " + "; ".join(f.replace("\t", " (") + ")"
                                                                              for f in failed[:3]))
    result = {}
    for split, items in layout.splits.items():
        ok = arrays[f"{split}/ok"].tolist()
        labels = arrays[f"{split}/y"]
        paths = [str(items[i][0]) for i in ok]
        for c in range(len(layout.classes)):
            if len(items) and not (labels == c).any() and any(lbl == c for _, lbl in items):
                raise DataError(f"class '{layout.classes[c]}' has no readable image in {root}/{split}",
                                hint="every image of that class failed to decode; see the skipped files above")
        result[split] = (_nchw(arrays[f"{split}/x"]), labels, paths)
    return result, layout.classes


def _estimate_mb(n: int, size: int, channels: int) -> float:
    return n * size * size * channels / 2**20


def load_images(cfg: DataConfig, seed: int, data_dir: Path | None, hints: dict) -> tuple[Splits, Schema]:
    """Load an image dataset into memory (or as a stream when it does not fit)."""
    import torch

    from danlu.data.tensors import TensorSplit

    notes: list[str] = []
    name = cfg.name
    classes: list[str]
    parts: dict[str, tuple[np.ndarray, np.ndarray, list[str] | None]] = {}
    folder: Path | None = None
    if name == "digits":
        classes = [str(i) for i in range(10)]
        parts = {k: (_nchw(x), y, None) for k, (x, y) in _digits().items()}
    elif name in ("mnist", "fashion-mnist"):
        from danlu.data.idx import FASHION_MNIST_CLASSES, MNIST_CLASSES

        classes = list(MNIST_CLASSES if name == "mnist" else FASHION_MNIST_CLASSES)
        parts = {k: (_nchw(x), y, None) for k, (x, y) in _idx(name, cfg, data_dir).items()}
    elif name == "cifar10":
        from danlu.data.cifar import CIFAR10_CLASSES

        arrays, folder = _cifar(cfg, data_dir)
        classes = list(CIFAR10_CLASSES)
        parts = {k: (_nchw(x), y, None) for k, (x, y) in arrays.items()}
    else:  # imagefolder
        if cfg.root is None:
            raise DataError("data.name=imagefolder needs data.root",
                            hint="data.root=/path/to/folder with train/<class>/*.jpg (and test/ or val/)")
        folder = Path(cfg.root)
    size = cfg.image_size or hints.get("image_size")
    if folder is not None:
        size = size or NATIVE_IMAGE_SIZE.get(name, DEFAULT_FOLDER_IMAGE_SIZE)
        channels = cfg.channels or hints.get("channels") or 3
        from danlu.data.imagefolder import scan_image_folder

        layout = scan_image_folder(folder)
        if cfg.loader == "stream" or (cfg.loader == "auto" and _estimate_mb(
                sum(len(v) for v in layout.splits.values()), size, channels) > cfg.max_memory_mb):
            from danlu.data.streaming import load_stream

            return load_stream(layout, cfg, seed, size, channels, hints, notes)
        parts, classes = _folder_arrays(folder, layout, size, channels, notes)

    parts = carve_splits(parts, val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction,
                         limit_train=cfg.limit_train, seed=seed, notes=notes)

    tensors = {}
    for split, (x, y, p) in parts.items():
        xt = torch.from_numpy(x)
        xt = _resize_channels(xt, size, cfg.channels or hints.get("channels"))
        tensors[split] = TensorSplit(xt, torch.from_numpy(np.asarray(y, np.int64)), p)
    for split in ("train", "test"):
        if len(tensors[split]) == 0:
            total = sum(len(t) for t in tensors.values())
            hint = ("data.test_fraction is 0: set it above 0 (e.g. 0.2), or add a test/ folder"
                    if split == "test" and cfg.test_fraction == 0 else
                    f"only {total} image(s) in all: add images (a few per class at least)" if total < 10 else
                    "check data.root and the folder layout")
            raise DataError(f"the {split} split of {name} has no images", hint=hint)
    c, h, w = tensors["train"].x.shape[1:]
    mean, std = hints.get("mean"), hints.get("std")
    if not cfg.normalize:  # pixels in [0, 1] as they are
        mean, std = [0.0] * int(c), [1.0] * int(c)
    elif mean is None:
        train_x = tensors["train"].x
        mean, std = channel_stats(train_x.index_select(0, torch.from_numpy(stats_sample(len(train_x)))))
    schema = Schema(kind="image", task="classification", input_shape=[int(c), int(h), int(w)], classes=classes,
                    mean=list(mean), std=list(std), source=name if folder is None else f"{name}:{folder}")
    return Splits(tensors["train"], tensors["val"], tensors["test"], notes), schema


def _resize_channels(x, size: int | None, channels: int | None):
    """Match a requested size/channel count for datasets stored at their native geometry."""
    import torch
    import torch.nn.functional as F

    if channels and x.shape[1] != channels:
        x = x.repeat(1, 3, 1, 1) if channels == 3 else x.float().mean(1, keepdim=True).round().to(torch.uint8)
    if size and (x.shape[2] != size or x.shape[3] != size) and len(x):
        x = F.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        x = x.round().clamp(0, 255).to(torch.uint8)
    return x
