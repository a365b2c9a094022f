"""The slow, obvious path: a torch DataLoader that decodes each image file when it is needed.

Used for image folders too big for memory (``data.loader: stream`` or auto past ``data.max_memory_mb``)
and as the reference the fast loader is tested against. Per sample it does what torchvision users
write by hand — decode, ToTensor, Normalize — and it shares the fast path's batch order and its
batched augmentation, so both paths train on the same samples in the same order.
"""

from __future__ import annotations

import numpy as np
import torch

from danlu.data.splits import Splits, carve_splits
from danlu.data.stats import channel_stats, stats_sample
from danlu.data.tensors import augment_batch, batch_count, index_batches
from danlu.errors import DataError
from danlu.recipe import DataConfig
from danlu.schema import Schema


class ImageFileDataset(torch.utils.data.Dataset):
    """(normalized float image [C,H,W], label) per file, via torchvision's ToTensor + Normalize."""

    def __init__(self, paths: list[str], labels: list[int], size: int, channels: int,
                 mean: list[float] | None = None, std: list[float] | None = None):
        self.paths, self.labels, self.size, self.channels = paths, labels, size, channels
        self.mean, self.std = mean, std
        self._transform = None

    def __len__(self) -> int:
        return len(self.paths)

    def raw(self, i: int) -> np.ndarray:
        from danlu.data.imagefolder import decode_image

        return decode_image(self.paths[i], (self.size, self.size), self.channels)

    def __getitem__(self, i: int):
        if self._transform is None:
            from torchvision import transforms

            steps = [transforms.ToTensor()]
            if self.mean is not None:
                steps.append(transforms.Normalize(self.mean, self.std))
            self._transform = transforms.Compose(steps)
        try:
            img = self.raw(i)
        except Exception:  # a file that went bad after the scan: skipped by the collate function
            return None
        return self._transform(img), self.labels[i]


def _collate(items):
    items = [it for it in items if it is not None]
    if not items:
        return None
    return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items], dtype=torch.long)


class StreamLoader:
    """Same interface as TensorLoader: iterate (x, y) batches on the device."""

    def __init__(self, dataset: ImageFileDataset, batch_size: int, *, shuffle: bool, generator, augment, device,
                 channels_last: bool, workers: int = 2):
        self.dataset, self.batch_size, self.shuffle, self.generator = dataset, batch_size, shuffle, generator
        self.augment = augment if augment is not None and augment.active else None
        self.device, self.channels_last, self.workers = torch.device(device), channels_last, workers

    def __len__(self) -> int:
        return batch_count(len(self.dataset), self.batch_size, self.shuffle)

    def batches(self) -> list[torch.Tensor]:
        """The epoch's batches of indices, in the fast loader's order."""
        return index_batches(len(self.dataset), self.batch_size, self.shuffle, self.generator)

    def __iter__(self):
        return self.iterate(self.batches())

    def iterate(self, batches: list[torch.Tensor], generator: torch.Generator | None = None):
        """Decode the given index batches (a rank's part of them under distributed training); ``generator``
        draws the augmentation (default: the loader's own)."""
        loader = torch.utils.data.DataLoader(self.dataset, batch_sampler=[b.tolist() for b in batches],
                                             num_workers=self.workers, collate_fn=_collate,
                                             persistent_workers=False)
        for batch in loader:
            if batch is None:
                continue
            x, y = batch[0].to(self.device), batch[1].to(self.device)
            if self.augment is not None and self.augment.shift > 0:  # exact flip + shift (batch_augment.py)
                from danlu.data.batch_augment import draw_flip_shift, flip_shift

                x = flip_shift(x, *draw_flip_shift(len(x), self.augment.shift, self.augment.flip,
                                                   generator or self.generator))
            if self.augment is not None and self.augment.affine:
                x = augment_batch(x, self.augment, generator or self.generator)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y


class StreamSplit:
    """A split of image files decoded on demand."""

    def __init__(self, paths: list[str], labels: list[int], size: int, channels: int, schema_ref: dict):
        self.paths, self.labels, self.size, self.channels = paths, labels, size, channels
        self._schema_ref = schema_ref  # filled with mean/std once known
        self.names = paths

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, idx) -> StreamSplit:
        idx = [int(i) for i in idx]
        return StreamSplit([self.paths[i] for i in idx], [self.labels[i] for i in idx], self.size, self.channels,
                           self._schema_ref)

    def dataset(self) -> ImageFileDataset:
        return ImageFileDataset(self.paths, self.labels, self.size, self.channels, self._schema_ref.get("mean"),
                                self._schema_ref.get("std"))

    def readable(self, limit: int) -> tuple[StreamSplit, np.ndarray]:
        """The first ``limit`` files that decode, and their pixels as uint8 [N, C, H, W]; files that went bad
        after the folder scan are passed over (as the loader's collate function does)."""
        ds = self.dataset()
        keep: list[int] = []
        arrays: list[np.ndarray] = []
        for i in range(len(ds)):
            if len(keep) == limit:
                break
            try:
                arrays.append(ds.raw(i).transpose(2, 0, 1))
            except Exception:  # noqa: BLE001 - any decoder failure means an unreadable file
                continue
            keep.append(i)
        if not keep:
            raise DataError(f"none of the {len(ds)} image files could be read, e.g. {self.paths[0]}",
                            hint="check that the folder holds images and that they are readable")
        return self.subset(keep), np.stack(arrays)

    def stream_loader(self, batch_size: int, *, shuffle: bool, generator, augment, device, channels_last, **_):
        return StreamLoader(self.dataset(), batch_size, shuffle=shuffle, generator=generator, augment=augment,
                            device=device, channels_last=channels_last)


def load_stream(layout, cfg: DataConfig, seed: int, size: int, channels: int, hints: dict,
                notes: list[str]) -> tuple[Splits, Schema]:
    """Image-folder splits that stay on disk; normalization stats from a sample of training images."""
    folder = layout.root
    if layout.skipped:
        notes.append(f"skipped {len(layout.skipped)} non-image file(s), e.g. {layout.skipped[0][0]}")
    parts = {k: ([str(p) for p, _ in v], np.array([c for _, c in v], np.int64)) for k, v in layout.splits.items()}
    parts = carve_splits(parts, val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction,
                         limit_train=cfg.limit_train, seed=seed, notes=notes)
    ref: dict = {}
    splits = {k: StreamSplit(list(p), np.asarray(y).tolist(), size, channels, ref) for k, (p, y) in parts.items()}
    if len(splits["train"]) == 0:
        raise DataError(f"no training images in {folder}")
    if not cfg.normalize:  # pixels in [0, 1] as they are
        ref["mean"], ref["std"] = [0.0] * channels, [1.0] * channels
    elif hints.get("mean") is not None:
        ref["mean"], ref["std"] = list(hints["mean"]), list(hints["std"])
    else:  # the same images the in-memory loader would use, so data.loader never changes the normalization
        train = splits["train"]
        _, sample = train.subset(stats_sample(len(train))).readable(len(train))
        ref["mean"], ref["std"] = channel_stats(torch.from_numpy(sample))
    notes.append(f"streaming {sum(len(s) for s in splits.values())} images from disk (data.loader=stream)")
    schema = Schema(kind="image", task="classification", input_shape=[channels, size, size], classes=layout.classes,
                    mean=ref["mean"], std=ref["std"], source=f"imagefolder:{folder}")
    return Splits(splits["train"], splits["val"], splits["test"], notes), schema
