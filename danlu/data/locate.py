"""Where a dataset lives: data.root, else --data-dir, else $DANLU_DATA, else the cache."""

from __future__ import annotations

import os
from pathlib import Path

from danlu.data.cache import cache_dir
from danlu.errors import DataError

# folder names a dataset may have inside a data directory, most specific first
FOLDER_NAMES: dict[str, tuple[str, ...]] = {
    "mnist": ("mnist", "MNIST"),
    "fashion-mnist": ("fashion-mnist", "fashion_mnist", "FashionMNIST"),
    "cifar10": ("cifar10", "cifar-10-batches-bin", "cifar-10-batches-py", "cifar10-images", "CIFAR10", "cifar-10"),
}


def search_dirs(data_dir: Path | None) -> list[Path]:
    dirs = []
    if data_dir is not None:
        dirs.append(Path(data_dir))
    for d in os.environ.get("DANLU_DATA", "").split(os.pathsep):
        if d:
            dirs.append(Path(d))
    dirs.append(cache_dir() / "datasets")
    return dirs


def find_dataset(name: str, root: Path | None, data_dir: Path | None) -> Path | None:
    """The dataset's own folder, or None when it is nowhere (the caller says how to get it)."""
    if root is not None:
        root = Path(root).expanduser()
        if not root.exists():
            raise DataError(f"data.root does not exist: {root}",
                            hint=f"point data.root at the folder holding the {name} files")
        return root
    for d in search_dirs(data_dir):
        for folder in FOLDER_NAMES.get(name, (name,)):
            if (d / folder).is_dir():
                return d / folder
    return None


def download_dir(name: str) -> Path:
    """Where ``data.download: true`` puts a dataset: the cache, never a user's data folder."""
    return cache_dir() / "datasets" / FOLDER_NAMES.get(name, (name,))[0]


def where_looked(name: str, data_dir: Path | None) -> str:
    places = [str(d / FOLDER_NAMES.get(name, (name,))[0]) for d in search_dirs(data_dir)]
    return ", ".join(places)
