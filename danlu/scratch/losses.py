"""Losses: ``forward(prediction, target)`` returns the mean loss over the batch, ``backward()`` its gradient
with respect to the prediction. The cross-entropies take logits, never probabilities: log(sigmoid) and
log(softmax) are computed in a form that cannot overflow or take log(0)."""

from __future__ import annotations

import numpy as np

from danlu.scratch.layers import sigmoid


class Loss:
    def forward(self, pred: np.ndarray, target: np.ndarray) -> float:
        raise NotImplementedError

    def backward(self) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, pred: np.ndarray, target: np.ndarray) -> float:
        return self.forward(pred, target)


class MSE(Loss):
    """Mean of (ŷ − y)² over every element (torch's mse_loss). ``half=True`` is the textbook ½(ŷ − y)²,
    whose gradient is exactly ŷ − y: the convention of the first article's worked example."""

    def __init__(self, half: bool = False) -> None:
        self.scale = 0.5 if half else 1.0

    def forward(self, pred: np.ndarray, target: np.ndarray) -> float:
        self._diff = pred - np.asarray(target, dtype=pred.dtype).reshape(pred.shape)
        return float(self.scale * np.mean(self._diff**2))

    def backward(self) -> np.ndarray:
        return 2.0 * self.scale * self._diff / self._diff.size


class BinaryCrossEntropy(Loss):
    """−[y log σ(z) + (1 − y) log(1 − σ(z))] from logits z, as max(z, 0) − z y + log(1 + e^−|z|).

    Its gradient is (σ(z) − y) / n: no σ'(z) factor, since the sigmoid's derivative cancels against the
    log's (the second article multiplies by σ'(z) again; see ``danlu scratch worked-example``).
    """

    def forward(self, logits: np.ndarray, target: np.ndarray) -> float:
        self._z = logits
        self._y = np.asarray(target, dtype=logits.dtype).reshape(logits.shape)
        return float(np.mean(np.maximum(logits, 0) - logits * self._y + np.log1p(np.exp(-np.abs(logits)))))

    def backward(self) -> np.ndarray:
        return (sigmoid(self._z) - self._y) / self._z.size


class CrossEntropy(Loss):
    """Softmax cross-entropy from logits (n, classes); targets are class indexes (n,) or probabilities
    (n, classes). log softmax = z − max − log Σ e^(z − max), so large logits do not overflow."""

    def forward(self, logits: np.ndarray, target: np.ndarray) -> float:
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        target = np.asarray(target)
        if target.ndim == 1:
            one_hot = np.zeros_like(logits)
            one_hot[np.arange(len(target)), target.astype(np.int64)] = 1.0
            target = one_hot
        self._p, self._t = np.exp(log_p), target.astype(logits.dtype, copy=False)
        return float(-(self._t * log_p).sum() / len(logits))

    def backward(self) -> np.ndarray:
        return (self._p * self._t.sum(axis=1, keepdims=True) - self._t) / len(self._p)
