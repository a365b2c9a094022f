"""model.norm (batch | group | none): GroupNorm in danlu's own models for DP training and federation, while
recipes without the option (and saved runs) build exactly the model they built before it existed."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from danlu.errors import DanluError
from danlu.models import build
from danlu.recipe import load_recipe
from danlu.schema import Schema

IMAGE = Schema(kind="image", task="classification", input_shape=[1, 12, 12], classes=[str(i) for i in range(3)])


def kinds(model: nn.Module) -> list[str]:
    return [type(m).__name__ for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm))]


def state_names(name: str, options: dict) -> list[str]:
    return list(build(name, options, IMAGE).state_dict())


def test_without_norm_the_models_are_the_ones_built_before_the_option():
    # the layer names and order a saved run's model.safetensors holds (checked against main before the change)
    assert state_names("cnn", {"channels": [8, 16], "hidden": [8]}) == [
        "features.0.weight", "features.0.bias", "features.3.weight", "features.3.bias",
        "classifier.1.weight", "classifier.1.bias", "classifier.3.weight", "classifier.3.bias"]
    assert state_names("cnn", {"channels": [8], "hidden": [8], "batch_norm": True})[:7] == [
        "features.0.weight", "features.1.weight", "features.1.bias", "features.1.running_mean",
        "features.1.running_var", "features.1.num_batches_tracked", "classifier.1.weight"]
    assert kinds(build("mlp", {"hidden": [16, 8], "batch_norm": True}, IMAGE)) == ["BatchNorm1d"] * 2
    assert kinds(build("fast_resnet", {"stem": 8, "widths": [8, 16]}, IMAGE)).count("BatchNorm2d") == 7
    assert load_recipe("digits-mlp").model.options["norm"] is None  # the recipe still says batch_norm: true


@pytest.mark.parametrize("name, options, want", [
    ("cnn", {"channels": [8, 16], "norm": "group"}, ["GroupNorm"] * 2),
    ("cnn", {"channels": [8, 16], "batch_norm": True, "norm": "group"}, ["GroupNorm"] * 2),  # norm, given, wins
    ("cnn", {"channels": [8, 16], "batch_norm": True, "norm": "none"}, []),
    ("mlp", {"hidden": [16, 8], "batch_norm": True, "norm": "group", "norm_groups": 4}, ["GroupNorm"] * 2),
    ("fast_resnet", {"stem": 8, "widths": [8, 16], "norm": "group"}, ["GroupNorm"] * 7),
])
def test_norm_group_replaces_every_batchnorm(name, options, want):
    torch.manual_seed(0)
    model = build(name, options, IMAGE)
    assert kinds(model) == want
    gn = [m for m in model.modules() if isinstance(m, nn.GroupNorm)]
    assert all(m.num_groups == options.get("norm_groups", 8) for m in gn)
    if name == "cnn" and want:  # the norm's shift replaces the conv's bias
        assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))
    model.train()
    out = model(torch.randn(1, 1, 12, 12))  # one example per batch: GroupNorm needs no batch statistics
    assert out.shape == (1, 3)


def test_group_norm_depends_on_each_example_alone():
    model = build("cnn", {"channels": [8], "hidden": [8], "norm": "group"}, IMAGE).train()
    x = torch.randn(4, 1, 12, 12)
    torch.testing.assert_close(model(x)[:1], model(x[:1]))


def test_groups_that_do_not_divide_the_widths_are_refused_with_the_fix():
    with pytest.raises(DanluError, match="not a multiple of 8") as e:
        load_recipe("digits-mlp", ["model.hidden=[100]", "model.norm=group"])
    assert "norm_groups" in str(e.value)
    with pytest.raises(DanluError, match="model.norm"):
        load_recipe("mnist-cnn", ["model.norm=layer"])
    load_recipe("digits-mlp", ["model.hidden=[100]", "model.norm=group", "model.norm_groups=4"])
    load_recipe("digits-mlp", ["model.hidden=[100]"])  # no GroupNorm, no divisibility to ask for


def test_a_group_norm_run_predicts_with_the_model_its_recipe_rebuilds(cli, tmp_path):
    from danlu.predictor import Predictor
    from tests.conftest import last_json

    code, out, err = cli("train", "digits-mlp", "model.norm=group", "train.epochs=2", "--json", "--quiet")
    assert code == 0, err
    result = last_json(out)
    assert result["metrics"]["accuracy"] > 0.5
    import danlu

    assert danlu.evaluate(result["run"])["metrics"]["accuracy"] == pytest.approx(result["metrics"]["accuracy"])
    assert Predictor.load(result["run"]).predict([torch.zeros(8, 8, dtype=torch.uint8).numpy()])[0]["top"]
