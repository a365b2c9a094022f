"""torchvision ResNet-18/34/50 for transfer learning, with ImageNet weights online or from a checked file.

torchvision is imported inside the builder only: importing danlu.models must stay cheap.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor, nn

from danlu.errors import DanluError
from danlu.models.efficientnet import (
    TransferClassifier,
    adapt_input_conv,
    check_and_load,
    check_positive_int,
    parse_weights,
    read_state_dict,
)

__all__ = ["DEPTHS", "RESNET_NORMALIZATION", "ResNetClassifier", "build_resnet"]

# torchvision's ImageNet preprocessing, which its IMAGENET1K_V1 weights were trained with.
RESNET_NORMALIZATION: tuple[tuple[float, float, float], tuple[float, float, float]] = (
    (0.485, 0.456, 0.406),
    (0.229, 0.224, 0.225),
)
DEPTHS = (18, 34, 50)
# torchvision's IMAGENET1K_V1 file names (first 8 hex digits of the sha256 in the name)
OFFICIAL_FILES = {18: "resnet18-f37072fd.pth", 34: "resnet34-b627a593.pth", 50: "resnet50-0676ba61.pth"}
_STEM = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool")


class ResNetClassifier(TransferClassifier):
    """A torchvision ResNet's layers re-hosted so that frozen BatchNorm stays in eval under ``train()``.

    State-dict keys are torchvision's (``conv1.weight``, ``layer1.0...``, ``fc.weight``); ``features(x)``
    is the pooled ``num_features``-d embedding, ``fc`` the head, with optional dropout in front of it.
    """

    head_name = "fc"

    def __init__(self, net: nn.Module, dropout: float = 0.0):
        super().__init__()
        for name in _STEM:
            setattr(self, name, getattr(net, name))
        self.dropout = nn.Dropout(dropout)
        self.fc: nn.Linear = net.fc
        self.num_features = net.fc.in_features

    def features(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.dropout(self.features(x)))


def build_resnet(depth: int, num_classes: int, weights: str | os.PathLike | None = "imagenet",
                 freeze_backbone: bool = False, in_channels: int = 3,
                 dropout: float = 0.0) -> ResNetClassifier:
    """ResNet-``depth`` with a new ``num_classes`` head for fine-tuning.

    ``weights``: "imagenet" (torchvision's IMAGENET1K_V1, downloaded once into the torch hub cache),
    None/"none" (random init) or a ``.pth``/``.safetensors`` file, whose sha256 is checked against the prefix
    in its name.
    With weights and ``num_classes == 1000`` the ImageNet head is kept. ``in_channels != 3`` replaces conv1,
    averaging pretrained RGB filters. Inputs are expected normalized with ``RESNET_NORMALIZATION``.
    """
    if depth not in DEPTHS:
        raise DanluError(f"ResNet depth must be one of {', '.join(map(str, DEPTHS))}, got {depth!r}")
    check_positive_int("num_classes", num_classes)
    check_positive_int("in_channels", in_channels)
    if not 0.0 <= dropout < 1.0:
        raise DanluError(f"dropout must be in [0, 1), got {dropout}")
    from torchvision import models

    source = parse_weights(weights)
    net = getattr(models, f"resnet{depth}")(weights=None)
    if source is not None:
        if source == "imagenet":
            state, where = _imagenet_state_dict(depth), f"torchvision ImageNet ResNet-{depth}"
        else:
            state, where = read_state_dict(source), str(source)
        check_and_load(net, state, where)
    model = ResNetClassifier(net, dropout)
    model.conv1 = adapt_input_conv(model.conv1, in_channels, pretrained=source is not None)
    if num_classes != 1000:
        model.replace_head(num_classes)
    if freeze_backbone:
        model.freeze_backbone()
    return model


def _imagenet_state_dict(depth: int) -> dict[str, Tensor]:
    """torchvision's IMAGENET1K_V1 state dict: from the torch hub cache, else downloaded into it.

    Read through ``read_state_dict``, so the cached file's sha256 is checked every time (torch.hub itself
    only checks it while downloading).
    """
    from torchvision import models

    url = getattr(models, f"ResNet{depth}_Weights").IMAGENET1K_V1.url
    cached = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
    if not cached.is_file():
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, str(cached), progress=False)
        except OSError as e:  # URLError, timeouts, DNS failures, read-only cache
            raise DanluError(
                f"could not download the ImageNet weights of ResNet-{depth} from {url}: {e}",
                hint=f"offline? copy the file here and pass it: `weights: /path/{OFFICIAL_FILES[depth]}`, "
                     f"or put it where torchvision caches it: {cached}",
            ) from None
    return read_state_dict(cached)
