"""Patch whitening: a first conv layer fit to the data instead of learned (the fast CIFAR-10 trainers' trick).

A K×K conv without padding whose filters are the eigenvectors of the covariance of the K×K patches of
training images, each divided by sqrt(eigenvalue + eps), plus their negations (so a ReLU/GELU after it
loses nothing). Its output has (about) identity covariance on the patches it was fit on: the next layers
start from decorrelated, unit-scale inputs, which is what lets a short run learn faster per FLOP.

The filters are frozen (``requires_grad`` False) but are ordinary parameters, so they are saved with the
weights and predict, export and serving rebuild exactly the fitted layer; the bias trains.
"""

from __future__ import annotations

import torch
from torch import nn


class PatchWhitening(nn.Conv2d):
    """Conv2d(c, 2·c·K², K) whose weights ``fit`` sets from data and training leaves alone."""

    def __init__(self, in_channels: int, kernel: int, eps: float = 5e-4):
        super().__init__(in_channels, 2 * in_channels * kernel * kernel, kernel, padding=0, bias=True)
        self.eps = eps
        self.weight.requires_grad_(False)
        nn.init.zeros_(self.bias)

    @torch.no_grad()
    def fit(self, x: torch.Tensor, chunk: int = 512) -> None:
        """Set the filters from images ``x`` [N, C, H, W], as the model sees them (normalized)."""
        from danlu.errors import DataError

        k, c = self.kernel_size[0], self.in_channels
        if x.ndim != 4 or x.shape[1] != c or min(x.shape[2:]) < k:
            raise DataError(f"patch whitening needs images [N, {c}, ≥{k}, ≥{k}], got {list(x.shape)}")
        dim = c * k * k
        cov = torch.zeros(dim, dim, dtype=torch.float64)
        total = torch.zeros(dim, dtype=torch.float64)
        count = 0
        for part in x.split(chunk):
            # [n, dim, L] patches, flattened in the conv weight's (channel, row, column) order
            patches = nn.functional.unfold(part.float(), k).transpose(1, 2).reshape(-1, dim).double()
            cov += patches.T @ patches
            total += patches.sum(0)
            count += len(patches)
        if count < 2 * dim:
            raise DataError(f"patch whitening needs at least {2 * dim} patches to fit, got {count}",
                            hint="give it more training images")
        mean = total / count
        cov = cov / count - torch.outer(mean, mean)
        eigvals, eigvecs = torch.linalg.eigh(cov)
        filters = (eigvecs / torch.sqrt(eigvals.clamp_min(0) + self.eps)).T  # [dim, dim], one filter a row
        weight = torch.cat([filters, -filters]).reshape(self.weight.shape)
        self.weight.copy_(weight.to(self.weight.dtype))
