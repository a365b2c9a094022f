"""Mini-batch training: shuffle, forward, loss, backward, step; the whole loop is the function ``fit``."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from danlu.scratch.layers import Layer
from danlu.scratch.losses import Loss
from danlu.scratch.optim import Optimizer


def batches(n: int, batch_size: int, rng: np.random.Generator | None = None) -> Iterator[np.ndarray]:
    """Index arrays covering range(n) once, shuffled when rng is given; the last batch may be smaller."""
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]


def fit(model: Layer, loss: Loss, optimizer: Optimizer, x: np.ndarray, y: np.ndarray, *, epochs: int = 10,
        batch_size: int = 32, seed: int = 0, on_epoch: Callable[[int, float], None] | None = None) -> list[float]:
    """Train in place; returns the mean training loss of each epoch."""
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} rows, y has {len(y)}")
    rng = np.random.default_rng(seed)
    history = []
    for epoch in range(epochs):
        total = 0.0
        for idx in batches(len(x), batch_size, rng):
            optimizer.zero_grad()
            total += loss.forward(model.forward(x[idx]), y[idx]) * len(idx)
            model.backward(loss.backward())
            optimizer.step()
        history.append(total / len(x))
        if on_epoch is not None:
            on_epoch(epoch, history[-1])
    return history


def predict(model: Layer, x: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """The model's outputs for x, computed in slices so a large test set needs little memory."""
    return np.concatenate([model.forward(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def accuracy(model: Layer, x: np.ndarray, y: np.ndarray) -> float:
    """Share of rows whose largest output is the true class."""
    return float(np.mean(predict(model, x).argmax(axis=1) == y))
