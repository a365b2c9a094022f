"""Folders of recordings → int16 waveform splits: ``data.name: audiofolder`` and the named ``mandarin-tones``.

Layout as for image folders: root/<class>/*.wav|flac|ogg|mp3, or root/{train,val,test}/<class>/...; without
a test/ (or val/) folder those splits are carved by fraction. Every clip is decoded once by decode_audio
(mono, resampled, fit to ``data.seconds``) and cached under DANLU_CACHE keyed by the files' stats and the
format, so a second run reads the waveforms in milliseconds. Unreadable, corrupt, empty, silent and
refused files are skipped and listed in the run's notes.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from danlu.data import cache
from danlu.data.audio import AUDIO_EXTENSIONS, AudioFormat, decode_many
from danlu.data.splits import Splits, carve_splits
from danlu.errors import DataError
from danlu.recipe import DataConfig
from danlu.schema import Schema

DEFAULT_SAMPLE_RATE = 16_000
DEFAULT_SECONDS = 1.0
_SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


def audio_format(cfg: DataConfig, seconds: float = DEFAULT_SECONDS) -> AudioFormat:
    return AudioFormat(cfg.sample_rate or DEFAULT_SAMPLE_RATE, cfg.seconds or seconds, cfg.fit)


def _visible(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as it:
            return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError as e:
        raise DataError(f"cannot read folder {folder}: {e.strerror or e}") from None


def _clips_under(folder: Path, skipped: list[tuple[Path, str]]) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            if path.suffix.lower() in AUDIO_EXTENSIONS and path.is_file():
                found.append(path)
            else:
                skipped.append((path, f"not an audio file ({path.suffix or 'no extension'})"))
    return found


def scan_audio_folder(root: Path) -> tuple[list[str], dict[str, list[tuple[Path, int]]], list[tuple[Path, str]]]:
    """(classes, {split: [(path, label)]}, skipped): classes are the sorted class folders of train (or all)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"audio folder {root} does not exist" if not root.exists() else f"{root} is not a folder",
                        hint="data.root must hold one folder per class (<class>/*.wav), or train/<class>/ and "
                             "test/<class>/ folders")
    entries = _visible(root)
    split_dirs = {_SPLIT_NAMES[e.name.lower()]: Path(e.path) for e in entries
                  if e.is_dir() and e.name.lower() in _SPLIT_NAMES}
    if split_dirs and "train" not in split_dirs:
        raise DataError(f"{root} has {', '.join(p.name + '/' for p in split_dirs.values())} but no train/ folder",
                        hint="rename the training folder to train/")
    tops = split_dirs or {"all": root}
    skipped: list[tuple[Path, str]] = []
    per_split: dict[str, dict[str, Path]] = {}
    for split, folder in tops.items():
        per_split[split] = {}
        for e in _visible(folder):
            if e.is_dir():
                per_split[split][e.name] = Path(e.path)
            else:
                skipped.append((Path(e.path), "not inside a class folder"))
    first = per_split.get("train") or per_split.get("all") or {}
    classes = sorted(first)
    if len(classes) < 2:
        raise DataError(f"{tops.get('train', root)} has {len(classes)} class folder(s); classification needs two",
                        hint="put the clips in one folder per class: <root>/<class name>/<clip>.wav")
    splits: dict[str, list[tuple[Path, int]]] = {}
    for split, class_dirs in per_split.items():
        extra = sorted(set(class_dirs) - set(classes))
        if extra:
            raise DataError(f"{tops[split]} has class folders that train/ lacks: {', '.join(extra)}",
                            hint="every class needs training clips; check the folder names")
        splits[split] = [(p, classes.index(c)) for c in sorted(class_dirs)
                         for p in _clips_under(class_dirs[c], skipped)]
    if not any(splits.values()):
        raise DataError(f"{root} holds no audio files (extensions read: {' '.join(sorted(AUDIO_EXTENSIONS))})",
                        hint="add .wav, .flac, .ogg or .mp3 clips to the class folders")
    return classes, splits, skipped


def decode_cached(name: str, paths: list[Path], fmt: AudioFormat) -> tuple[np.ndarray, list[int], list[str]]:
    """int16 [N_ok, samples], the indexes of the readable files, and "path (why)" for each one left out."""
    key = cache.fingerprint(paths, **fmt.to_dict())

    def build() -> dict[str, np.ndarray]:
        x, ok, failures = decode_many(paths, fmt)
        return {"x": x, "ok": np.array(ok, np.int64),
                "failed": np.array([f"{p} ({why})" for p, why in failures], dtype=np.str_)}

    arrays, _ = cache.load_or_build(name, key, build)
    return arrays["x"], arrays["ok"].tolist(), [str(s) for s in arrays["failed"].tolist()]


def skipped_note(what: str, items: list[str]) -> str:
    more = f"; and {len(items) - 3} more" if len(items) > 3 else ""
    return f"skipped {len(items)} {what}: " + "; ".join(items[:3]) + more


def to_splits(parts: dict[str, tuple], classes: list[str], fmt: AudioFormat, source: str,
              notes: list[str], extra: dict | None = None) -> tuple[Splits, Schema]:
    """{split: (int16 x, labels, names)} → Splits of TensorSplit and the audio Schema."""
    import torch

    from danlu.data.tensors import TensorSplit

    tensors = {s: TensorSplit(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.asarray(y, np.int64)),
                              list(n) if n is not None else None) for s, (x, y, n) in parts.items()}
    for split in ("train", "test"):
        if len(tensors[split]) == 0:
            raise DataError(f"the {split} split of {source} has no readable clips",
                            hint="add clips, or lower data.test_fraction / data.val_fraction")
    schema = Schema(kind="audio", task="classification", input_shape=[fmt.samples], classes=classes,
                    audio={**fmt.to_dict(), **(extra or {})}, source=source)
    return Splits(tensors["train"], tensors["val"], tensors["test"], notes,
                  stats={"clips": {s: len(t) for s, t in tensors.items()}}), schema


def load_audio_folder(cfg: DataConfig, seed: int) -> tuple[Splits, Schema]:
    if cfg.root is None:
        raise DataError("data.name=audiofolder needs data.root",
                        hint="data.root=/path/to/clips with one folder per class (<class>/*.wav)")
    root = Path(cfg.root).expanduser()
    classes, splits, skipped = scan_audio_folder(root)
    notes: list[str] = []
    if skipped:
        notes.append(skipped_note("non-audio file(s)", [f"{p} ({why})" for p, why in skipped]))
    fmt = audio_format(cfg)
    paths = [p for items in splits.values() for p, _ in items]
    x, ok, failed = decode_cached("audiofolder", paths, fmt)
    if failed:
        notes.append(skipped_note("unreadable, silent or refused clip(s)", failed))
    row_of = {i: r for r, i in enumerate(ok)}
    parts, start = {}, 0
    for split, items in splits.items():
        rows = [(row_of[start + j], lbl, str(p)) for j, (p, lbl) in enumerate(items) if start + j in row_of]
        start += len(items)
        idx = np.array([r for r, _, _ in rows], np.int64)
        parts[split] = (x[idx] if len(idx) else np.zeros((0, fmt.samples), np.int16),
                        np.array([lbl for _, lbl, _ in rows], np.int64), [n for _, _, n in rows])
    parts = carve_splits(parts, val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction,
                         limit_train=cfg.limit_train, seed=seed, notes=notes)
    return to_splits(parts, classes, fmt, f"audiofolder:{root}", notes)
