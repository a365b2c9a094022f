"""The normalization layer a model's ``norm`` option asks for, and where BatchNorm is in a built model.

BatchNorm mixes the examples of a batch (its statistics), which DP-SGD cannot clip per sample and federated
averaging cannot average soundly; GroupNorm normalizes each example on its own and has only affine weights,
so the same models train privately and federate with ``model.norm=group``.
"""

from __future__ import annotations

from torch import nn

# models whose recipe has a ``norm`` option (batch | group | none)
NORM_OPTION_MODELS = ("mlp", "cnn", "fast_resnet")


def resolve_norm(norm: str | None, batch_norm: bool = False) -> str:
    """``norm`` when given; otherwise the older ``batch_norm`` flag decides (so old recipes build the same)."""
    return norm if norm is not None else ("batch" if batch_norm else "none")


def norm_layer(kind: str, width: int, groups: int, spatial: bool) -> nn.Module | None:
    """BatchNorm1d/2d, GroupNorm(groups, width), or None for ``none``."""
    if kind == "batch":
        return nn.BatchNorm2d(width) if spatial else nn.BatchNorm1d(width)
    if kind == "group":
        return nn.GroupNorm(groups, width)
    return None


def batchnorm_layers(model: nn.Module) -> list[str]:
    """Names of the BatchNorm layers in ``model`` (empty when it has none)."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def groupnorm_hint(model_name: str) -> str:
    """How to train this model family without BatchNorm."""
    if model_name in NORM_OPTION_MODELS:
        alt = "" if model_name == "fast_resnet" else ", or model.norm=none"
        return f"set model.norm=group (GroupNorm in place of BatchNorm{alt})"
    return f"{model_name} has BatchNorm built in; use model.name=cnn model.norm=group (or model.name=mlp)"
