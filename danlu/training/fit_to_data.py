"""The seam for models that derive layers from the data (patch whitening): one fit before the first step.

A model that has ``fit_to_data(x)`` and says ``fits_to_data`` (FastResNet with ``whiten``) gets a sample of
training inputs, normalized as the model sees them and not augmented, once, before the first step of a new
run. A resumed run is not fit again: its checkpoint already holds the fitted weights (standard_callbacks
adds this callback to new runs only).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from danlu.training.hooks import Callback

if TYPE_CHECKING:
    from danlu.training.hooks import Loop


class FitToData(Callback):
    def __init__(self, samples: int = 5000, seed: int = 0):
        self.samples, self.seed = samples, seed
        self.fitted = 0  # how many times it fit (tests read it)

    def on_train_start(self, loop: Loop) -> None:
        model = getattr(loop.model, "_module", loop.model)  # Opacus wraps the model; the weights are the same
        if not getattr(model, "fits_to_data", False):
            return
        model.fit_to_data(training_sample(loop, self.samples, self.seed))
        self.fitted += 1


@torch.no_grad()
def training_sample(loop: Loop, samples: int, seed: int) -> torch.Tensor:
    """Up to ``samples`` training inputs, drawn at random with ``seed`` (the loop's own generator is left alone,
    so the run's batches are the same with or without a fit, and every rank of a distributed run draws the
    same sample), normalized, without augmentation (a streamed folder's batches are augmented as in training)."""
    from danlu.inference import make_loader

    train = getattr(loop.train_loader, "inner", loop.train_loader)  # a distributed run's whole split, not a shard
    split = getattr(train, "split", None)
    if split is not None and hasattr(split, "subset"):
        n = min(samples, len(split))
        idx = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))[:n].sort().values
        loader = make_loader(split.subset(idx), loop.schema, loop.recipe, train=False, generator=None,
                             device=torch.device("cpu"), channels_last=False)
        return _first(loader, samples)
    # a streamed image folder: the training loader's first batches, drawn with a generator of their own
    saved, train.generator = train.generator, torch.Generator().manual_seed(seed)
    try:
        return _first(train, samples)
    finally:
        train.generator = saved


def _first(loader: object, samples: int) -> torch.Tensor:
    xs, have = [], 0
    for x, _ in loader:
        xs.append(x.float().cpu())
        have += len(x)
        if have >= samples:
            break
    return torch.cat(xs)[:samples]
