"""In-place activations (ReLU(inplace=True), EfficientNet's ReLU6) overwrite the very tensors that
Captum's layer hooks keep for the backward pass; explanations run with them switched off."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def no_inplace(model: nn.Module) -> Iterator[nn.Module]:
    """Every module with ``inplace=True`` computes out of place inside the block (same values), then
    goes back to how it was, so the predictor keeps its memory-saving in-place layers."""
    changed = [m for m in model.modules() if getattr(m, "inplace", False) is True]
    for m in changed:
        m.inplace = False
    try:
        yield model
    finally:
        for m in changed:
            m.inplace = True
