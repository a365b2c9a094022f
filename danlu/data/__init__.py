"""Data loading: a recipe's data section → Splits (train/val/test) + Schema.

One loader per source family; ``load`` picks it by ``data.name``. Heavy imports happen inside the
family modules, only for the family in use.
"""

from __future__ import annotations

from pathlib import Path

from danlu.data.splits import Splits
from danlu.recipe import DataConfig
from danlu.schema import Schema

IMAGE_SETS = {"digits", "mnist", "fashion-mnist", "cifar10", "imagefolder"}
TABULAR_SETS = {"iris", "breast_cancer", "diabetes", "wine", "csv"}
TEXT_SETS = {"text", "chnsenticorp", "sst2"}
AUDIO_SETS = {"audiofolder", "mandarin-tones"}


def kind_of(name: str) -> str:
    """The data kind (image, tabular, text, audio) a dataset name yields."""
    if name in IMAGE_SETS:
        return "image"
    if name in AUDIO_SETS:
        return "audio"
    if name in TEXT_SETS:
        return "text"
    return "tabular"


def load(cfg: DataConfig, *, seed: int = 0, data_dir: Path | None = None,
         hints: dict | None = None) -> tuple[Splits, Schema]:
    """Load and split the data; ``hints`` carry what the model needs (image size, normalization, tokenizer)."""
    hints = hints or {}
    kind = kind_of(cfg.name)
    if kind == "image":
        from danlu.data.vision import load_images

        return load_images(cfg, seed, data_dir, hints)
    if kind == "text":
        from danlu.data.text.dataset import load_text

        return load_text(cfg, seed, hints, data_dir)
    if kind == "audio":
        from danlu.data.audiofolder import load_audio_folder
        from danlu.data.mandarin import load_mandarin_tones

        if cfg.name == "mandarin-tones":
            return load_mandarin_tones(cfg, seed, data_dir)
        return load_audio_folder(cfg, seed)
    from danlu.data.tabular import load_tabular

    return load_tabular(cfg, seed, hints)


__all__ = ["Schema", "Splits", "load", "kind_of"]
