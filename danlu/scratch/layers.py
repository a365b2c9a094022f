"""Layers: each ``forward`` keeps what its ``backward`` needs; ``backward(dL/dout)`` returns dL/din and adds
dL/dparam to each parameter's ``grad`` (accumulated, as autograd does, until ``zero_grad``)."""

from __future__ import annotations

import numpy as np


class Parameter:
    """A trainable array and the gradient of the loss with respect to it (same shape)."""

    def __init__(self, value: np.ndarray, name: str = "") -> None:
        self.value = value
        self.grad = np.zeros_like(value)
        self.name = name

    def __repr__(self) -> str:
        return f"Parameter({self.name or '?'}, shape={self.value.shape})"


class Layer:
    """One step of the network. Layers without parameters return []."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward(self, grad: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def parameters(self) -> list[Parameter]:
        return []

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)


class Dense(Layer):
    """z = x W + b, with W of shape (inputs, outputs): row i of x times column j of W is neuron j's input.

    Initialised Glorot-uniform from ``seed`` (a fixed seed: the same network every time), unless ``weight``
    and ``bias`` are given, as the worked example does (all weights 0.01, biases 0.1).
    """

    def __init__(self, n_in: int, n_out: int, *, seed: int = 0, weight: np.ndarray | float | None = None,
                 bias: np.ndarray | float | None = None, dtype: type = np.float64) -> None:
        if weight is None:
            limit = np.sqrt(6.0 / (n_in + n_out))
            w = np.random.default_rng(seed).uniform(-limit, limit, (n_in, n_out))
        else:
            w = np.broadcast_to(np.asarray(weight, dtype=dtype), (n_in, n_out))
        b = np.zeros(n_out) if bias is None else np.broadcast_to(np.asarray(bias, dtype=dtype), (n_out,))
        self.weight = Parameter(np.array(w, dtype=dtype), "weight")
        self.bias = Parameter(np.array(b, dtype=dtype), "bias")
        self._x: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._x = x
        return x @ self.weight.value + self.bias.value

    def backward(self, grad: np.ndarray) -> np.ndarray:
        # dL/dW[i, j] = sum over the batch of x[n, i] * dL/dz[n, j]: each weight's gradient is scaled by its input
        self.weight.grad += self._x.T @ grad
        self.bias.grad += grad.sum(axis=0)
        return grad @ self.weight.value.T

    def parameters(self) -> list[Parameter]:
        return [self.weight, self.bias]


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + e^-x) without overflow: for x < 0 it is computed as e^x / (1 + e^x)."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


class Sigmoid(Layer):
    def forward(self, x: np.ndarray) -> np.ndarray:
        self._y = sigmoid(x)
        return self._y

    def backward(self, grad: np.ndarray) -> np.ndarray:
        return grad * self._y * (1.0 - self._y)  # σ'(z) = σ(z)(1 − σ(z))


class Tanh(Layer):
    def forward(self, x: np.ndarray) -> np.ndarray:
        self._y = np.tanh(x)
        return self._y

    def backward(self, grad: np.ndarray) -> np.ndarray:
        return grad * (1.0 - self._y**2)


class ReLU(Layer):
    def forward(self, x: np.ndarray) -> np.ndarray:
        self._mask = x > 0
        return np.where(self._mask, x, 0.0).astype(x.dtype, copy=False)

    def backward(self, grad: np.ndarray) -> np.ndarray:
        return grad * self._mask  # the derivative at exactly 0 is taken as 0, as torch does


class Softmax(Layer):
    """Probabilities along the last axis. For training, prefer CrossEntropy on the logits: it is stabler
    and its gradient is simply p − y."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        self._y = e / e.sum(axis=-1, keepdims=True)
        return self._y

    def backward(self, grad: np.ndarray) -> np.ndarray:
        # Jacobian-vector product of diag(p) − p pᵀ, without building the Jacobian
        return self._y * (grad - (grad * self._y).sum(axis=-1, keepdims=True))


class Sequential(Layer):
    """Layers applied in order; backward runs them in reverse."""

    def __init__(self, *layers: Layer) -> None:
        self.layers = list(layers)

    def forward(self, x: np.ndarray) -> np.ndarray:
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, grad: np.ndarray) -> np.ndarray:
        for layer in reversed(self.layers):
            grad = layer.backward(grad)
        return grad

    def parameters(self) -> list[Parameter]:
        return [p for layer in self.layers for p in layer.parameters()]

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad[...] = 0.0
