"""The fast loader: whole splits held as tensors, batched by index permutation.

Images stay uint8 in memory (4× less traffic than float) and are normalized and augmented per batch
with a few vectorized ops — no per-sample PIL work and no DataLoader workers in the training loop.
``benchmarks/mnist.py`` measures it against a torchvision DataLoader; ``tests/test_tensors.py`` checks
it against the slow path in ``streaming.py`` sample for sample.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from danlu.recipe import AugmentConfig


@dataclass
class TensorSplit:
    """One split in memory. x: uint8 [N,C,H,W] (image), float32 [N,F] (tabular), int64 [N,L] (text)."""

    x: torch.Tensor
    y: torch.Tensor  # int64 [N] class ids, or float32 [N, T] regression targets
    names: list[str] | None = None  # where each sample came from (file paths), for reports

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, idx: torch.Tensor | Sequence[int]) -> TensorSplit:
        idx = torch.as_tensor(idx, dtype=torch.long)
        names = [self.names[i] for i in idx.tolist()] if self.names is not None else None
        return TensorSplit(self.x.index_select(0, idx), self.y.index_select(0, idx), names)


def batch_count(n: int, batch_size: int, shuffle: bool, drop_last: bool = False) -> int:
    """How many batches ``index_batches`` makes (schedules and progress bars need it up front)."""
    if drop_last and n >= batch_size:
        return n // batch_size
    count = math.ceil(n / batch_size)
    return count - 1 if shuffle and count > 1 and n % batch_size == 1 else count


def _fold_single(batches: list[torch.Tensor]) -> list[torch.Tensor]:
    """A one-sample last batch joins the one before it: BatchNorm cannot train on a batch of one
    (1,295 digits at batch 647 used to fail in the last step of the first epoch)."""
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2:] = [torch.cat(batches[-2:])]
    return batches


def index_batches(n: int, batch_size: int, shuffle: bool, generator: torch.Generator | None,
                  drop_last: bool = False) -> list[torch.Tensor]:
    """The batches of one epoch as index tensors; the fast and slow loaders share this order.
    Training (shuffled) epochs never end in a batch of one."""
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    batches = list(order.split(batch_size))
    if drop_last and len(batches) > 1 and len(batches[-1]) < batch_size:
        batches.pop()
    return _fold_single(batches) if shuffle else batches


def length_bucketed_batches(lengths: torch.Tensor, batch_size: int, generator: torch.Generator,
                            window: int = 50) -> list[torch.Tensor]:
    """Shuffled batches of similar length: shuffle, sort within windows of ``window`` batches, shuffle batches.

    Trimming each batch to its longest sequence then wastes little compute on padding.
    """
    order = torch.randperm(len(lengths), generator=generator)
    chunk = batch_size * window
    batches: list[torch.Tensor] = []
    for start in range(0, len(order), chunk):
        part = order[start:start + chunk]
        part = part[torch.argsort(lengths[part], descending=True, stable=True)]
        batches.extend(part.split(batch_size))
    batches = _fold_single(batches)  # only the last window can end in a batch of one
    perm = torch.randperm(len(batches), generator=generator)
    return [batches[i] for i in perm.tolist()]


def poisson_steps(n: int, batch_size: int) -> int:
    """Steps of one Poisson-sampled epoch: one pass in expectation (N / batch, at least 1)."""
    return max(1, round(n / batch_size))


def poisson_batches(n: int, batch_size: int, generator: torch.Generator | None) -> list[torch.Tensor]:
    """One epoch of Poisson sampling, as DP-SGD's privacy analysis assumes: every step takes each sample
    independently with probability q = batch/N, so batch sizes vary (and a batch may be empty)."""
    q = min(1.0, batch_size / n)
    return [(torch.rand(n, generator=generator) < q).nonzero().view(-1) for _ in range(poisson_steps(n, batch_size))]


class Normalizer:
    """uint8 images → float, scaled to [0, 1], minus mean, over std, per channel."""

    def __init__(self, mean: Sequence[float] | None, std: Sequence[float] | None, channels: int):
        mean = list(mean) if mean else [0.0] * channels
        std = list(std) if std else [1.0] * channels
        # (x/255 - m)/s == x * a + b, one multiply-add per pixel
        scales = [1.0 / (255.0 * s) for s in std]
        shifts = [-m / s for m, s in zip(mean, std, strict=True)]
        self.scale = torch.tensor(scales).view(1, -1, 1, 1)
        self.shift = torch.tensor(shifts).view(1, -1, 1, 1)
        # one value for every channel (grayscale, or mean=std=0.5): plain scalars, which skip broadcasting
        # (a 256×1×28×28 batch: 60 µs vs 120 µs for addcmul with [1, C, 1, 1] tensors)
        self.scalar = (scales[0], shifts[0]) if len(set(scales)) == 1 and len(set(shifts)) == 1 else None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.scalar is not None:
            return x.float().mul_(self.scalar[0]).add_(self.scalar[1])
        scale, shift = self.scale.to(x.device), self.shift.to(x.device)
        return torch.addcmul(shift, x.float(), scale)


def augment_batch(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """One random affine per image (flip, rotation, zoom, shift) in a single grid_sample call."""
    n = x.shape[0]
    g = generator

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=g)

    angle = uniform(-cfg.rotate, cfg.rotate) * (math.pi / 180.0)
    scale = uniform(float(cfg.scale[0]), float(cfg.scale[1]))
    tx = uniform(-cfg.translate, cfg.translate) * 2.0  # grid coordinates span [-1, 1]
    ty = uniform(-cfg.translate, cfg.translate) * 2.0
    flip_here = cfg.flip and cfg.shift == 0  # with augment.shift the pixel path flips (batch_augment.py)
    flip = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0) if flip_here else torch.ones(n)
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack([
        torch.stack([cos * flip, -sin, tx], dim=1),
        torch.stack([sin * flip, cos, ty], dim=1),
    ], dim=1).to(x.device, x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class TensorLoader:
    """Iterates (x, y) batches of a TensorSplit, ready for the model, on ``device``."""

    def __init__(self, split: TensorSplit, batch_size: int, *, kind: str, shuffle: bool = False,
                 generator: torch.Generator | None = None, normalizer: Normalizer | None = None,
                 augment: AugmentConfig | None = None, pad_id: int = 0, device: torch.device | str = "cpu",
                 channels_last: bool = False, drop_last: bool = False, poisson: bool = False):
        self.split, self.batch_size, self.kind = split, batch_size, kind
        self.poisson = poisson  # DP-SGD's sampling: see poisson_batches
        self.shuffle, self.generator = shuffle, generator
        self.normalizer = normalizer
        self.augment = augment if augment is not None and augment.active else None
        self.pad_id, self.device = pad_id, torch.device(device)
        self.channels_last, self.drop_last = channels_last, drop_last
        self._lengths = (split.x != pad_id).sum(1) if kind == "text" else None
        # On a GPU the whole split moves once (images stay uint8: CIFAR-10's train split is 150 MB) and batches
        # are cut, augmented and normalized there: no host-to-device copy per step. Unmeasured (no GPU here).
        self._resident = self.device.type == "cuda"
        self._x = split.x.to(self.device) if self._resident else split.x
        self._y = split.y.to(self.device) if self._resident else split.y

    def __len__(self) -> int:
        if self.poisson:
            return poisson_steps(len(self.split), self.batch_size)
        return batch_count(len(self.split), self.batch_size, self.shuffle, self.drop_last)

    def batches(self) -> list[torch.Tensor]:
        if self.poisson:
            return poisson_batches(len(self.split), self.batch_size, self.generator)
        if self.kind == "text" and self.shuffle:
            return length_bucketed_batches(self._lengths, self.batch_size, self.generator)
        return index_batches(len(self.split), self.batch_size, self.shuffle, self.generator, self.drop_last)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.iterate(self.batches())

    def iterate(self, batches: list[torch.Tensor], generator: torch.Generator | None = None
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The given index batches as model input; ``generator`` draws the augmentation (default: the
        loader's own). Distributed training passes each rank's part of the epoch's batches."""
        x, y = self._x, self._y
        for idx in batches:
            idx = idx.to(self.device) if self._resident else idx
            # index_select copies whole rows: 16 µs for a 256-image MNIST batch here, x[idx] 430 µs
            yield self.prepare(x.index_select(0, idx), y.index_select(0, idx), generator)

    def prepare(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Move a raw batch to the device and turn it into model input."""
        nb = self.device.type == "cuda"
        x, y = x.to(self.device, non_blocking=nb), y.to(self.device, non_blocking=nb)
        if self.kind == "image":
            if self.augment is not None and self.augment.shift > 0:  # exact flip + shift, on uint8
                from danlu.data.batch_augment import draw_flip_shift, flip_shift

                x = flip_shift(x, *draw_flip_shift(len(x), self.augment.shift, self.augment.flip,
                                                   generator or self.generator))
            x = self.normalizer(x) if self.normalizer else x.float()
            if self.augment is not None and self.augment.affine:
                x = augment_batch(x, self.augment, generator or self.generator)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
        elif self.kind == "text":
            x = trim_padding(x, self.pad_id)
        elif self.kind == "audio":  # int16 waveforms; augmentation runs in the model (danlu/models/audio.py)
            x = x.float().mul_(1.0 / 32768.0)
        return x, y


def trim_padding(ids: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Drop trailing all-pad columns of a right-padded batch."""
    if ids.shape[1] == 0:
        return ids
    used = (ids != pad_id).any(0)
    longest = int(used.nonzero().max()) + 1 if bool(used.any()) else 1
    return ids[:, :longest]
