"""Optimizers, written as torch.optim defines them (so the tests can compare step for step)."""

from __future__ import annotations

import numpy as np

from danlu.scratch.layers import Parameter


class Optimizer:
    def __init__(self, params: list[Parameter], lr: float) -> None:
        self.params, self.lr = list(params), lr

    def step(self) -> None:
        raise NotImplementedError

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad[...] = 0.0


class SGD(Optimizer):
    """θ ← θ − lr·v, with the velocity v ← μ v + g (g = gradient + weight_decay·θ); μ = 0 is plain SGD.
    Nesterov looks ahead: θ ← θ − lr (g + μ v)."""

    def __init__(self, params: list[Parameter], lr: float = 0.01, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, lr)
        self.momentum, self.nesterov, self.weight_decay = momentum, nesterov, weight_decay
        self.velocity = [None] * len(self.params)

    def step(self) -> None:
        for i, p in enumerate(self.params):
            g = p.grad + self.weight_decay * p.value if self.weight_decay else p.grad
            if self.momentum:
                v = self.velocity[i]
                v = g.copy() if v is None else self.momentum * v + g  # the first step starts v at g, as torch
                self.velocity[i] = v
                g = g + self.momentum * v if self.nesterov else v
            p.value -= self.lr * g


class Adam(Optimizer):
    """m ← β1 m + (1 − β1) g, v ← β2 v + (1 − β2) g², θ ← θ − lr · m̂ / (√v̂ + ε), where m̂ = m / (1 − β1ᵗ)
    and v̂ = v / (1 − β2ᵗ) undo the bias of starting both averages at zero."""

    def __init__(self, params: list[Parameter], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        super().__init__(params, lr)
        self.beta1, self.beta2 = betas
        self.eps, self.weight_decay = eps, weight_decay
        self.m = [np.zeros_like(p.value) for p in self.params]
        self.v = [np.zeros_like(p.value) for p in self.params]
        self.t = 0

    def step(self) -> None:
        self.t += 1
        c1, c2 = 1 - self.beta1**self.t, 1 - self.beta2**self.t
        for p, m, v in zip(self.params, self.m, self.v, strict=True):
            g = p.grad + self.weight_decay * p.value if self.weight_decay else p.grad
            m *= self.beta1
            m += (1 - self.beta1) * g
            v *= self.beta2
            v += (1 - self.beta2) * g * g
            p.value -= self.lr * (m / c1) / (np.sqrt(v / c2) + self.eps)
