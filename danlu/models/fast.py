"""A small residual conv net for training image classifiers from scratch in minutes (cifar10-fast).

Stages of conv 3×3 → max-pool 2 → BN → ReLU, each followed by a residual pair of conv → BN → ReLU, then a
global max-pool and one linear layer. Pooling right after the widening conv lets the BN, the ReLU and the
residual convs run on a quarter of the pixels, which is where a CPU spends its time. Every shape follows
from the input size and ``widths``; the head's global pool makes it size-agnostic as long as each stage
still has a pixel left. Test-time augmentation (``tta``: flip, or flip and 1-pixel shifts) averages logits
in eval mode, so the test split, export and serving all see the same model.

Options from the fast-CIFAR literature, all off by default (old recipes and runs build the same net):
``whiten=K`` puts a frozen K×K patch-whitening conv in place of the stem (danlu/models/whitening.py; fit
once on training images through ``fit_to_data``), ``activation=gelu``, and ``logit_scale`` (with
``head_bias``) to shrink the head's output, which acts like a higher softmax temperature early in training;
``block=double`` makes each stage conv → pool → BN → act → conv → BN → act with no skip (the airbench nets'
stage), ``norm_scale=false`` freezes the BN scales at 1, and ``dirac`` starts each conv as a partial identity.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from danlu.models.norm import norm_layer

TTA_MODES = ("none", "flip", "flip_translate")


def _norm(width: int, norm: str, groups: int, scale: bool = True) -> nn.Module:
    layer = norm_layer(norm, width, groups, spatial=True)
    assert layer is not None, "fast_resnet always normalizes (batch or group)"
    if not scale:  # the scale stays 1 (the airbench nets): the next conv's weights can carry it
        layer.weight.requires_grad_(False)
    return layer


def _act(activation: str) -> nn.Module:
    return nn.GELU() if activation == "gelu" else nn.ReLU(inplace=True)


def _conv_bn(c_in: int, c_out: int, norm: str = "batch", groups: int = 8, activation: str = "relu",
             scale: bool = True) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), _norm(c_out, norm, groups, scale), _act(activation)]


class Residual(nn.Module):
    """x + f(x): two conv-BN-ReLU layers at constant width (GroupNorm in place of BN with norm=group)."""

    def __init__(self, width: int, norm: str = "batch", groups: int = 8, activation: str = "relu",
                 scale: bool = True):
        super().__init__()
        self.body = nn.Sequential(*_conv_bn(width, width, norm, groups, activation, scale),
                                  *_conv_bn(width, width, norm, groups, activation, scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class FastResNet(nn.Module):
    """stem conv (or patch whitening) → [conv → pool → BN → act → (residual)]* → global max-pool → linear."""

    def __init__(self, input_shape: Sequence[int], num_outputs: int, stem: int = 32,
                 widths: Sequence[int] = (64, 128, 256), residual: Sequence[bool] | bool = True,
                 tta_flip: bool = True, norm: str = "batch", norm_groups: int = 8, whiten: int = 0,
                 activation: str = "relu", logit_scale: float = 1.0, head_bias: bool = True,
                 tta: str | None = None, block: str = "residual", norm_scale: bool = True, dirac: bool = False):
        super().__init__()
        from danlu.errors import DanluError

        c_in, h, w = input_shape[0], *input_shape[1:]
        flags = [residual] * len(widths) if isinstance(residual, bool) else list(residual)
        if len(flags) != len(widths):
            raise DanluError(f"model.residual has {len(flags)} entries for {len(widths)} widths",
                             hint="give one true/false per stage, or a single true/false for all")
        if tta is not None and tta not in TTA_MODES:
            from danlu.errors import unknown_name

            raise unknown_name("model.tta", tta, TTA_MODES)
        size = min(h, w) - (whiten - 1 if whiten else 0)  # a whitening conv has no padding
        if size < 2 ** len(widths):
            raise DanluError(f"images of {list(input_shape)} are too small for {len(widths)} stages (each halves "
                             f"the size; {len(widths)} need at least {2 ** len(widths)} px"
                             f"{f' after the {whiten}x{whiten} whitening' if whiten else ''})",
                             hint="raise data.image_size or give model.widths fewer entries")
        if whiten:
            from danlu.models.whitening import PatchWhitening

            self.whiten: nn.Module | None = PatchWhitening(c_in, whiten)
            layers: list[nn.Module] = [_act(activation)]
            prev = self.whiten.out_channels
        else:
            self.whiten = None
            layers = _conv_bn(c_in, stem, norm, norm_groups, activation)
            prev = stem
        for width, res in zip(widths, flags, strict=True):
            layers += [nn.Conv2d(prev, width, 3, padding=1, bias=False), nn.MaxPool2d(2),
                       _norm(width, norm, norm_groups, norm_scale), _act(activation)]
            if block == "double":  # a second conv-BN-act without the skip (the airbench nets' stage)
                layers += _conv_bn(width, width, norm, norm_groups, activation, norm_scale)
            elif res:
                layers.append(Residual(width, norm, norm_groups, activation, norm_scale))
            prev = width
        self.features = nn.Sequential(*layers)
        if dirac:
            for m in self.features.modules():
                if isinstance(m, nn.Conv2d):
                    _dirac_init(m)
        self.head = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(prev, num_outputs, bias=head_bias))
        self.logit_scale = float(logit_scale)
        self.tta = tta if tta is not None else ("flip" if tta_flip else "none")

    @property
    def tta_flip(self) -> bool:
        """The older on/off switch: true for any TTA mode that mirrors."""
        return self.tta != "none"

    @tta_flip.setter
    def tta_flip(self, on: bool) -> None:
        self.tta = "flip" if on else "none"

    @property
    def fits_to_data(self) -> bool:
        """Whether ``fit_to_data`` has anything to fit (the training loop skips drawing a sample otherwise)."""
        return self.whiten is not None

    def fit_to_data(self, x: torch.Tensor) -> None:
        """Fit what depends on the data (the whitening's patch covariance) on a sample of normalized training
        inputs; the training loop calls it once, before the first step of a new run."""
        if self.whiten is not None:
            self.whiten.fit(x)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        if self.whiten is not None:
            x = self.whiten(x)
        out = self.head(self.features(x))
        return out * self.logit_scale if self.logit_scale != 1.0 else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or self.tta == "none":
            return self.logits(x)
        views = tta_views(x, self.tta)  # one forward each: a batch of all six is six times the activations' memory
        out = self.logits(views[0])
        for v in views[1:]:
            out = out + self.logits(v)
        return out / len(views)


@torch.no_grad()
def _dirac_init(conv: nn.Conv2d) -> None:
    """The first min(in, out) filters start as the identity (the rest keep their random init): each conv
    begins by passing its input through, so a deep stack starts close to a shallow one."""
    n = min(conv.in_channels, conv.out_channels)
    nn.init.dirac_(conv.weight[:n])


def shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """The image moved by (dy, dx) pixels, the uncovered border filled by reflection (as training's shift)."""
    p = max(abs(dy), abs(dx))
    h, w = x.shape[-2:]
    padded = nn.functional.pad(x, (p, p, p, p), mode="reflect")
    return padded[..., p - dy: p - dy + h, p - dx: p - dx + w]


def tta_views(x: torch.Tensor, mode: str) -> list[torch.Tensor]:
    """The views whose logits are averaged: the image and its mirror, and for flip_translate both also
    moved one pixel down-right and one pixel up-left."""
    base = [x] if mode == "none" else [x, x.flip(3)]
    if mode != "flip_translate":
        return base
    return [*base, *(shift(v, d, d) for d in (1, -1) for v in base)]


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
    was_training, tta = model.training, getattr(model, "tta", None)
    try:
        model.eval()
        if tta is not None:
            model.tta = "none"
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
        if tta is not None:
            model.tta = tta
    return total
