"""A small residual conv net for training image classifiers from scratch in minutes (cifar10-fast).

Stages of conv 3×3 → max-pool 2 → BN → ReLU, each followed by a residual pair of conv → BN → ReLU, then a
global max-pool and one linear layer. Pooling right after the widening conv lets the BN, the ReLU and the
residual convs run on a quarter of the pixels, which is where a CPU spends its time. Every shape follows
from the input size and ``widths``; the head's global pool makes it size-agnostic as long as each stage
still has a pixel left. ``tta_flip`` averages the logits of the image and its mirror in eval mode, so the
test split, export and serving all see the same model.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from danlu.models.norm import norm_layer


def _norm(width: int, norm: str, groups: int) -> nn.Module:
    layer = norm_layer(norm, width, groups, spatial=True)
    assert layer is not None, "fast_resnet always normalizes (batch or group)"
    return layer


def _conv_bn(c_in: int, c_out: int, norm: str = "batch", groups: int = 8) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), _norm(c_out, norm, groups), nn.ReLU(inplace=True)]


class Residual(nn.Module):
    """x + f(x): two conv-BN-ReLU layers at constant width (GroupNorm in place of BN with norm=group)."""

    def __init__(self, width: int, norm: str = "batch", groups: int = 8):
        super().__init__()
        self.body = nn.Sequential(*_conv_bn(width, width, norm, groups), *_conv_bn(width, width, norm, groups))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class FastResNet(nn.Module):
    """stem conv → [conv → pool → BN → ReLU → (residual)]* → global max-pool → linear."""

    def __init__(self, input_shape: Sequence[int], num_outputs: int, stem: int = 32,
                 widths: Sequence[int] = (64, 128, 256), residual: Sequence[bool] | bool = True,
                 tta_flip: bool = True, norm: str = "batch", norm_groups: int = 8):
        super().__init__()
        from danlu.errors import DanluError

        c_in, h, w = input_shape[0], *input_shape[1:]
        flags = [residual] * len(widths) if isinstance(residual, bool) else list(residual)
        if len(flags) != len(widths):
            raise DanluError(f"model.residual has {len(flags)} entries for {len(widths)} widths",
                             hint="give one true/false per stage, or a single true/false for all")
        if min(h, w) < 2 ** len(widths):
            raise DanluError(f"images of {list(input_shape)} are too small for {len(widths)} stages (each halves "
                             f"the size; {len(widths)} need at least {2 ** len(widths)} px)",
                             hint="raise data.image_size or give model.widths fewer entries")
        layers: list[nn.Module] = _conv_bn(c_in, stem, norm, norm_groups)
        prev = stem
        for width, res in zip(widths, flags, strict=True):
            layers += [nn.Conv2d(prev, width, 3, padding=1, bias=False), nn.MaxPool2d(2),
                       _norm(width, norm, norm_groups), nn.ReLU(inplace=True)]
            if res:
                layers.append(Residual(width, norm, norm_groups))
            prev = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(prev, num_outputs))
        self.tta_flip = tta_flip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.features(x))
        if self.tta_flip and not self.training:
            out = 0.5 * (out + self.head(self.features(x.flip(3))))
        return out


def flops_per_sample(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Forward multiply-adds × 2 of the conv and linear layers for one sample (no TTA): to turn measured
    samples/s into the fraction of the machine's peak the training steps reach."""
    total = 0

    def count(mod: nn.Module, _inp: tuple, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
            total += 2 * out[0].numel() * k
        elif isinstance(mod, nn.Linear):
            total += 2 * mod.in_features * mod.out_features

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training, tta = model.training, getattr(model, "tta_flip", False)
    try:
        model.eval()
        if tta:
            model.tta_flip = False
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
        if tta:
            model.tta_flip = tta
    return total
