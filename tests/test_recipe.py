import pytest

from danlu.errors import DanluError, RecipeError
from danlu.recipe import builtin_recipes, load_recipe, parse_override


def test_every_builtin_recipe_loads_and_says_what_it_reproduces():
    names = builtin_recipes()
    for required in ("digits-mlp", "mnist-mlp", "mnist-cnn", "cifar10-cnn", "imagefolder-cnn",
                     "imagefolder-efficientnet", "breast-cancer-mlp", "diabetes-mlp"):
        assert required in names
        assert names[required], f"{required} needs a first-line comment"
    for name in names:
        load_recipe(name)


def test_overrides_are_typed_and_validated():
    r = load_recipe("digits-mlp", ["train.epochs=3", "model.hidden=[256,128]", "data.root=/x", "train.lr=1e-2"])
    assert r.train.epochs == 3 and r.model.options["hidden"] == [256, 128]
    assert str(r.data.root) == "/x" and r.train.lr == 0.01
    assert parse_override("a.b=null") == (["a", "b"], None)


def test_resolved_recipe_round_trips_through_yaml(tmp_path):
    r = load_recipe("mnist-cnn", ["train.epochs=1"])
    path = tmp_path / "r.yaml"
    path.write_text(r.to_yaml())
    assert load_recipe(str(path)).to_dict() == r.to_dict() | {"name": "mnist-cnn"}


@pytest.mark.parametrize("override, needle, hint_needle", [
    ("train.optimizer=adm", "unknown optimizer 'adm'", "adam"),
    ("train.schedule=cos", "unknown schedule", "cosine"),
    ("data.name=mnsit", "unknown dataset", "mnist"),
    ("model.name=resnet", "unknown model", "resnet18"),
    ("train.epochs=many", "train.epochs", None),
    ("data.imagesize=3", "unknown key 'data.imagesize'", "image_size"),
    ("model.hiden=[3]", "unknown option", "hidden"),
])
def test_bad_overrides_say_what_and_how(override, needle, hint_needle):
    with pytest.raises(DanluError) as e:
        load_recipe("digits-mlp", [override])
    text = str(e.value)
    assert needle in text
    if hint_needle:
        assert hint_needle in text


def test_yaml_errors_give_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  name: digits\ntrain:\n  epochs: [oops\n")
    with pytest.raises(RecipeError, match=r"bad.yaml, line \d+"):
        load_recipe(str(bad))
    typo = tmp_path / "typo.yaml"
    typo.write_text("data:\n  name: digits\ntrain:\n  epochs: 2\n  batchsize: 3\n")
    with pytest.raises(RecipeError, match=r"typo.yaml, line 5: unknown key 'train.batchsize'"):
        load_recipe(str(typo))


def test_unknown_recipe_lists_choices():
    with pytest.raises(DanluError, match="digits-mlp"):
        load_recipe("digit-mlp")


def test_cnn_activation_option_builds_tanh_and_keeps_relu_layout():
    import torch
    from torch import nn

    from danlu.models.basic import ConvNet

    relu = ConvNet([1, 28, 28], 10)
    assert [type(m) for m in relu.modules()].count(nn.ReLU) == 3  # two conv blocks + one dense: as before
    tanh = ConvNet([1, 28, 28], 10, channels=[16, 32], kernel_size=5, padding="same", hidden=[32],
                   activation="tanh")
    kinds = [type(m) for m in tanh.modules()]
    assert kinds.count(nn.Tanh) == 3 and nn.ReLU not in kinds
    # pooling before a monotonic activation is the same function as after it
    x = torch.randn(4, 16, 8, 8)
    assert torch.equal(nn.MaxPool2d(2)(torch.tanh(x)), torch.tanh(nn.MaxPool2d(2)(x)))
    assert load_recipe("mnist-cnn", ["model.activation=tanh"]).model.options["activation"] == "tanh"
    with pytest.raises(DanluError, match="relu"):  # non-monotonic ones would not commute with the pool
        load_recipe("mnist-cnn", ["model.activation=gelu"])


def test_tanh_cnn_is_not_explained_by_guided_backprop():
    from danlu.explanations.fit import choose_method, methods_for

    assert methods_for("cnn", "image")[0] == "guided_gradcam"
    tanh = methods_for("cnn", "image", {"activation": "tanh"})
    assert "guided_gradcam" not in tanh and tanh[0] == "gradcam"
    with pytest.raises(DanluError, match="tanh"):
        choose_method("guided_gradcam", "cnn", "image", {"activation": "tanh"})


def test_cnn_per_layer_kernels_strides_padding_and_overlapping_pool():
    """Papernot et al.'s DP CNN (8x8 stride 2 pad 2 → pool 2 stride 1 → 4x4 stride 2 → pool 2 stride 1 →
    32 → 10) is a recipe away: its 26,010 parameters and flatten size come out as in the paper's net."""
    import torch
    from torch import nn

    from danlu.models.basic import ConvNet

    opts = ["model.channels=[16,32]", "model.kernel_size=[8,4]", "model.stride=2", "model.padding=[2,0]",
            "model.pool_stride=1", "model.hidden=[32]", "model.activation=tanh"]
    recipe = load_recipe("mnist-cnn", opts)
    assert recipe.model.options["kernel_size"] == [8, 4] and recipe.model.options["pool_stride"] == 1
    net = ConvNet([1, 28, 28], 10, channels=[16, 32], kernel_size=[8, 4], stride=2, padding=[2, 0], pool=2,
                  pool_stride=1, hidden=[32], activation="tanh")
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.kernel_size, c.stride, c.padding) for c in convs] == [((8, 8), (2, 2), (2, 2)), ((4, 4), (2, 2), (0, 0))]
    assert all(p.stride == 1 for p in net.modules() if isinstance(p, nn.MaxPool2d))
    assert net.classifier[1].in_features == 32 * 4 * 4 and sum(p.numel() for p in net.parameters()) == 26_010
    assert net(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    # one number still means every layer, and the defaults build the net they built before
    assert [c.kernel_size for c in ConvNet([1, 28, 28], 10, kernel_size=5).modules()
            if isinstance(c, nn.Conv2d)] == [(5, 5), (5, 5)]
    with pytest.raises(DanluError, match="model.kernel_size has 3 entries for 2 conv layers"):
        load_recipe("mnist-cnn", ["model.kernel_size=[3,3,3]"])


def test_another_model_drops_the_search_space_over_the_old_models_options():
    """breast-cancer-mlp's tune: block searches model.hidden; with model.name=lightgbm that key was refused
    before any training, though the user never asked to search."""
    recipe = load_recipe("breast-cancer-mlp", ["model.name=lightgbm"])
    assert recipe.model.name == "lightgbm" and recipe.tune and not any(k.startswith("model.") for k in recipe.tune)
    assert "model.hidden" in load_recipe("breast-cancer-mlp").tune  # the recipe as written keeps it
