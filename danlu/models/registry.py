"""The one place that maps a model name to the code that builds it from a schema.

To add a model: write its options in ``specs.py`` and a builder here. Builders import their family
module lazily, so listing models or validating recipes never pays for torchvision or transformers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from danlu.errors import DanluError, unknown_name
from danlu.models.memory import check_fits, count_on_meta
from danlu.models.specs import MODELS, validate_options
from danlu.schema import Schema

# Input geometry a pretrained backbone expects; data loading uses it unless the recipe overrides it.
IMAGENET_MEAN_STD = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
PRETRAINED_INPUT: dict[str, dict[str, Any]] = {
    "resnet18": {"image_size": 224, "channels": 3, "normalization": IMAGENET_MEAN_STD},
    "resnet34": {"image_size": 224, "channels": 3, "normalization": IMAGENET_MEAN_STD},
    "resnet50": {"image_size": 224, "channels": 3, "normalization": IMAGENET_MEAN_STD},
}


# tabular models that read the column plan (category codes, quantile-normalized numbers, dates, text)
TABLE_MODELS = ("tabular_net", "lightgbm", "table_ensemble")


def _efficientnet_input() -> dict[str, Any]:
    from danlu.models.efficientnet import DEFAULT_IMAGE_SIZE, IMAGENET_NORMALIZATION

    return {"image_size": DEFAULT_IMAGE_SIZE, "channels": 3, "normalization": IMAGENET_NORMALIZATION}


def input_hints(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """What the data loader should produce for this model (image size, channels, normalization)."""
    hints: dict[str, Any] = {}
    if name == "efficientnet_lite0":
        info = _efficientnet_input()
    else:
        info = PRETRAINED_INPUT.get(name)
    if info:
        hints["image_size"], hints["channels"] = info["image_size"], info["channels"]
        if options.get("weights") not in (None, "none"):
            mean, std = info["normalization"]
            hints["mean"], hints["std"] = list(mean), list(std)
    if name in TABLE_MODELS:
        hints["table"] = "columns"  # the column plan (danlu/data/columns.py), not one-hot columns
    if name == "transformer":
        hints["tokenizer"] = "pretrained"
        hints["pretrained"] = options.get("pretrained", "minilm")
    return hints


def _mlp(o: dict, s: Schema) -> nn.Module:
    from danlu.models.basic import MLP

    return MLP(s.input_shape, s.num_outputs, **o)


def _cnn(o: dict, s: Schema) -> nn.Module:
    from danlu.models.basic import ConvNet

    return ConvNet(s.input_shape, s.num_outputs, **o)


def _simple_cnn(o: dict, s: Schema) -> nn.Module:
    from danlu.models.basic import SimpleCNN

    return SimpleCNN(s.input_shape, s.num_outputs, **o)


def _fast_resnet(o: dict, s: Schema) -> nn.Module:
    from danlu.models.fast import FastResNet

    return FastResNet(s.input_shape, s.num_outputs, **o)


def _efficientnet(o: dict, s: Schema) -> nn.Module:
    from danlu.models.efficientnet import build_efficientnet_lite0

    return build_efficientnet_lite0(s.num_outputs, weights=o["weights"], freeze_backbone=o["freeze_backbone"],
                                    dropout=o["dropout"], in_channels=s.input_shape[0])


def _resnet(depth: int) -> Callable[[dict, Schema], nn.Module]:
    def build_it(o: dict, s: Schema) -> nn.Module:
        from danlu.models.resnet import build_resnet

        return build_resnet(depth, s.num_outputs, weights=o["weights"], freeze_backbone=o["freeze_backbone"],
                            in_channels=s.input_shape[0], dropout=o["dropout"])

    return build_it


def _text(cls_name: str) -> Callable[[dict, Schema], nn.Module]:
    def build_it(o: dict, s: Schema) -> nn.Module:
        from danlu.models import text

        t = s.text
        if cls_name == "TransformerClassifier":
            rest = {k: v for k, v in o.items() if k != "pretrained"}
            return text.TransformerClassifier(t.get("pretrained") or o["pretrained"], s.num_outputs, **rest)
        return getattr(text, cls_name)(t["vocab_size"], s.num_outputs, pad_id=t.get("pad_id", 0), **o)

    return build_it


def _tabular_net(o: dict, s: Schema) -> nn.Module:
    from danlu.errors import DataError
    from danlu.models.tabular import TabularNet

    if not s.table:
        raise DataError("model 'tabular_net' reads the column plan of schema.json, and this run's data has none",
                        hint="train it anew: the column plan is made when tabular_net or lightgbm is trained")
    return TabularNet(s, **o)


def _lightgbm(o: dict, s: Schema) -> nn.Module:
    from danlu.models.boosting import BoostedTrees

    return BoostedTrees(s, o)


def _table_ensemble(o: dict, s: Schema) -> nn.Module:
    from danlu.models.ensemble import TableEnsemble

    return TableEnsemble(s, [(m["name"], m["weight"], BUILDERS[m["name"]](m["options"], s)) for m in o["members"]])


def _audio(cls_name: str) -> Callable[[dict, Schema], nn.Module]:
    def build_it(o: dict, s: Schema) -> nn.Module:
        from danlu.models import audio

        return getattr(audio, cls_name)(s.audio, s.num_outputs, o)

    return build_it


BUILDERS: dict[str, Callable[[dict, Schema], nn.Module]] = {
    "mlp": _mlp,
    "cnn": _cnn,
    "simple_cnn": _simple_cnn,
    "fast_resnet": _fast_resnet,
    "efficientnet_lite0": _efficientnet,
    "resnet18": _resnet(18),
    "resnet34": _resnet(34),
    "resnet50": _resnet(50),
    "lstm": _text("RNNClassifier"),
    "article_lstm": _text("ArticleLSTM"),
    "textcnn": _text("TextCNN"),
    "transformer": _text("TransformerClassifier"),
    "tabular_net": _tabular_net,
    "lightgbm": _lightgbm,
    "table_ensemble": _table_ensemble,
    "bc_resnet": _audio("AudioResNet"),
    "tone_net": _audio("ToneNet"),
}
assert set(BUILDERS) == set(MODELS), "specs.MODELS and registry.BUILDERS must list the same models"

# Grad-CAM's layer per model (danlu explain): the last rectified feature map with a spatial layout, the A^k
# Grad-CAM weights. For danlu's CNNs that is `features` (after the last pool and ReLU): on a trained mnist-cnn
# its map beats the last Conv2d's pre-activation 11x11 one (deletion AUC 0.43 vs 0.69 over 200 MNIST test
# images, random 0.45), whose negative background values rank the digit's strokes last. Models missing here
# (MLPs, text models) have no spatial map, so Grad-CAM does not fit them.
GRADCAM_LAYERS: dict[str, str] = {
    "cnn": "features",
    "simple_cnn": "features",
    "efficientnet_lite0": "conv_head",
    "resnet18": "layer4",
    "resnet34": "layer4",
    "resnet50": "layer4",
}
assert set(GRADCAM_LAYERS) <= set(MODELS)

# Guided Grad-CAM (Selvaraju et al. 2017: guided backpropagation x the upsampled Grad-CAM map) on the same
# layer, and what `--method auto` uses for these models: small CNNs on small images, where Grad-CAM's map is
# a 5x5 (28 px MNIST) or 2x2 (8 px digits) grid, too coarse to rank pixels. On a trained mnist-cnn, 200 MNIST
# test images, Grad-CAM's deletion / insertion AUCs are 0.43 / 0.45 against random's 0.45 / 0.46 and Guided
# Grad-CAM's 0.25 / 0.70 (benchmarks/explain.py --checks). Only models whose every ReLU is its own nn.ReLU
# module: guided backpropagation rewrites those modules' gradients (not ReLU6's, nor a module used twice).
GUIDED_GRADCAM_MODELS: tuple[str, ...] = ("cnn", "simple_cnn")
assert set(GUIDED_GRADCAM_MODELS) <= set(GRADCAM_LAYERS)


def build(name: str, options: dict[str, Any], schema: Schema, *, training: bool = False) -> nn.Module:
    """Build a model for this data; a model that cannot take this kind of data says which can, and one
    too large for the memory left (for ``training``, or for inference) is refused before it is allocated."""
    if name not in MODELS:
        raise unknown_name("model", name, MODELS)
    kinds = MODELS[name][1]
    if schema.kind not in kinds:
        fits = sorted(n for n, (_, k, _) in MODELS.items() if schema.kind in k)
        raise DanluError(f"model '{name}' takes {'/'.join(kinds)} data, but this dataset is {schema.kind}",
                         hint=f"models for {schema.kind} data: {', '.join(fits)}")
    options = validate_options(name, options)
    if name != "transformer":  # its size is the pretrained encoder's on disk, loaded by the builder
        shapes_only = {**options, "weights": None} if "weights" in options else options  # no weight files read
        check_fits(name, count_on_meta(lambda: BUILDERS[name](shapes_only, schema)), training)
    return BUILDERS[name](options, schema)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(all parameters, trainable parameters)."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable
