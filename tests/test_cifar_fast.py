"""cifar10-fast: the batched flip + shift against a per-image reference, the net's inferred shapes, the
CIFAR image-folder copy read at its own 32 px, and one short epoch of the recipe on generated CIFAR files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from danlu.data.batch_augment import draw_flip_shift, flip_shift
from danlu.errors import DanluError
from danlu.models.fast import FastResNet, flops_per_sample
from tests.conftest import last_json


def _reference(x: np.ndarray, flips, dy, dx, pad: int) -> np.ndarray:
    """One image at a time, the textbook way: reflect-pad, crop at the offset, mirror."""
    out = np.empty_like(x)
    h, w = x.shape[2:]
    for k in range(len(x)):
        padded = np.pad(x[k], ((0, 0), (pad, pad), (pad, pad)), mode="reflect")
        crop = padded[:, pad + int(dy[k]): pad + int(dy[k]) + h, pad + int(dx[k]): pad + int(dx[k]) + w]
        out[k] = crop[:, :, ::-1] if bool(flips[k]) else crop
    return out


@pytest.mark.parametrize("shape,pad", [((64, 3, 32, 32), 2), ((40, 1, 9, 13), 4), ((8, 3, 5, 5), 1)])
def test_flip_shift_matches_per_image_reference(shape, pad):
    x = torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    flips, dy, dx = draw_flip_shift(shape[0], pad, True, torch.Generator().manual_seed(2))
    assert flips.any() and not flips.all() and dy.abs().max() <= pad and dx.abs().max() == pad
    got = flip_shift(x, flips, dy, dx)
    assert got.dtype == torch.uint8 and got.shape == x.shape
    np.testing.assert_array_equal(got.numpy(), _reference(x.numpy(), flips, dy, dx, pad))


def test_flip_shift_channels_last_and_identity():
    x = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
    flips, dy, dx = draw_flip_shift(6, 0, False, None)
    assert torch.equal(flip_shift(x, flips, dy, dx), x)
    cl = x.contiguous(memory_format=torch.channels_last)
    f, a, b = draw_flip_shift(6, 3, True, torch.Generator().manual_seed(0))
    assert torch.equal(flip_shift(cl, f, a, b), flip_shift(x, f, a, b))


@pytest.mark.parametrize("shape", [[3, 32, 32], [1, 28, 28], [3, 64, 48], [3, 8, 8]])
def test_fast_resnet_shapes_follow_the_input(shape):
    model = FastResNet(shape, 7, stem=4, widths=[8, 16, 16], residual=[True, False, True])
    model.eval()
    x = torch.randn(3, *shape)
    out = model(x)
    assert out.shape == (3, 7)
    model.tta_flip = False
    plain, mirrored = model(x), model(x.flip(3))
    torch.testing.assert_close(out, 0.5 * (plain + mirrored))
    model.train()
    assert model(x).shape == (3, 7)
    assert flops_per_sample(model, shape) > 0 and model.training


def test_fast_resnet_refuses_images_too_small_and_bad_flags():
    with pytest.raises(DanluError, match="too small"):
        FastResNet([3, 4, 4], 10, widths=[8, 8, 8])
    with pytest.raises(DanluError, match="residual"):
        FastResNet([3, 32, 32], 10, widths=[8, 8], residual=[True])


def test_models_lists_fast_resnet_counted_on_cifar():
    """What `danlu models` prints for it (tests/test_cli.py runs the whole listing once)."""
    from danlu.cli.catalog import parameter_count as _parameter_count
    from danlu.models.specs import MODELS

    assert "fast_resnet" in MODELS
    line = _parameter_count("fast_resnet")
    assert "CIFAR-10" in line and any(ch.isdigit() for ch in line)


def _write_cifar_bin(root: Path, n_train: int = 80, n_test: int = 60) -> None:
    """CIFAR-10 binary batches whose class shows as the colour of the image (flip- and shift-proof)."""
    rng = np.random.default_rng(3)
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    for name, n in [(f"data_batch_{i}.bin", n_train) for i in range(1, 6)] + [("test_batch.bin", n_test)]:
        labels = rng.integers(0, 10, n).astype(np.uint8)
        pixels = rng.integers(0, 8, (n, 3, 32, 32)).astype(np.uint8)
        for i, c in enumerate(labels):
            pixels[i, c % 3] += np.uint8(24 * c)
        (folder / name).write_bytes(np.concatenate([labels[:, None], pixels.reshape(n, -1)], axis=1).tobytes())


def test_cifar10_fast_one_epoch_on_generated_batches(cli, tmp_path):
    _write_cifar_bin(tmp_path / "cifar")
    code, out, err = cli("train", "cifar10-fast", f"data.root={tmp_path / 'cifar'}", "train.epochs=1",
                         "train.batch_size=32", "train.lr=0.05", "train.warmup_epochs=0.2", "model.stem=8",
                         "model.widths=[16,16]", "model.residual=true", "--json", "--quiet")
    assert code == 0, err
    res = last_json(out)
    assert res["metrics"]["accuracy"] > 0.3
    schema = json.loads((Path(res["run"]) / "schema.json").read_text())
    assert schema["input_shape"] == [3, 32, 32]


def test_cifar_image_folder_copy_is_read_at_32_px(cli, tmp_path):
    """The shared cifar10-images/ copy used to be decoded at the 64 px image-folder default: 4x the pixels."""
    from PIL import Image

    from danlu.data.cifar import CIFAR10_CLASSES

    rng = np.random.default_rng(0)
    root = tmp_path / "cifar10-images"
    for split, n in (("train", 4), ("test", 2)):
        for c, name in enumerate(CIFAR10_CLASSES):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                img = rng.integers(0, 30, (32, 32, 3)).astype(np.uint8)
                img[..., c % 3] += np.uint8(20 * c)
                Image.fromarray(img).save(root / split / name / f"{i}.png")
    code, out, err = cli("train", "cifar10-cnn", f"data.root={root}", "train.epochs=1", "model.channels=4",
                         "model.hidden=8", "--json", "--quiet")
    assert code == 0, err
    schema = json.loads((Path(last_json(out)["run"]) / "schema.json").read_text())
    assert schema["input_shape"] == [3, 32, 32]


def test_compile_auto_stays_eager_on_cpu_and_loader_stays_on_host():
    from torch import nn

    from danlu.data.tensors import TensorLoader, TensorSplit
    from danlu.inference import compiled_for

    model = nn.Linear(2, 2)
    cpu = torch.device("cpu")
    assert compiled_for(model, "auto", cpu) is model and compiled_for(model, "off", cpu) is model
    split = TensorSplit(torch.zeros(10, 3, 8, 8, dtype=torch.uint8), torch.zeros(10, dtype=torch.long))
    loader = TensorLoader(split, 4, kind="image", device=cpu)
    assert not loader._resident and loader._x is split.x
    assert [len(x) for x, _ in loader] == [4, 4, 2]


def test_cifar10_fast_one_epoch_on_a_real_subset(cli, tmp_path):
    """The shared CIFAR-10 images, 10 train / 3 test per class linked into a folder; skipped where absent."""
    from tests.conftest import SHARED

    images = SHARED / "datasets" / "cifar10-images"
    if not (images / "train").is_dir():
        pytest.skip(f"no CIFAR-10 image folder at {images}")
    for split, n in (("train", 10), ("test", 3)):
        for cls in sorted((images / split).iterdir()):
            (tmp_path / "sub" / split / cls.name).mkdir(parents=True)
            for f in sorted(cls.iterdir())[:n]:
                (tmp_path / "sub" / split / cls.name / f.name).symlink_to(f)
    code, out, err = cli("train", "cifar10-fast", f"data.root={tmp_path / 'sub'}", "train.epochs=1",
                         "train.batch_size=16", "model.stem=8", "model.widths=[16,16,16]", "--json", "--quiet")
    assert code == 0, err
    res = last_json(out)
    assert json.loads((Path(res["run"]) / "schema.json").read_text())["input_shape"] == [3, 32, 32]
    assert 0.0 <= res["metrics"]["accuracy"] <= 1.0



def test_amp_bf16_runs_the_cpu_training_step_in_bf16_only_where_the_cpu_has_it(monkeypatch):
    """train.amp=bf16: the step autocasts to bf16 on a CPU with native bf16, stays fp32 on one without;
    evaluation on a CPU is fp32 either way (the reported metrics are the served model's)."""
    from danlu.inference import amp_dtype, cpu_has_native_bf16, step_amp_dtype
    from danlu.recipe import load_recipe

    cpu = torch.device("cpu")
    monkeypatch.setenv("DANLU_CPU_BF16", "1")
    assert cpu_has_native_bf16() and step_amp_dtype(cpu, "bf16") == torch.bfloat16
    assert step_amp_dtype(cpu, True) is None and amp_dtype(cpu, "bf16") is None
    monkeypatch.setenv("DANLU_CPU_BF16", "0")
    assert step_amp_dtype(cpu, "bf16") is None
    assert load_recipe("cifar10-fast", ["train.amp=bf16"]).train.amp == "bf16"
    with pytest.raises(DanluError, match="true, false or bf16"):
        load_recipe("cifar10-fast", ["train.amp=fp8"])


@pytest.mark.parametrize("native", ["1", "0"])
def test_a_bf16_run_trains_and_reports_fp32_metrics(tmp_path, monkeypatch, native):
    import danlu
    from danlu.training.loop import SupervisedStep

    seen = []
    original = SupervisedStep.__call__

    def spy(self, x, y):
        seen.append(self.amp)
        return original(self, x, y)

    monkeypatch.setattr(SupervisedStep, "__call__", spy)
    monkeypatch.setenv("DANLU_CPU_BF16", native)
    _write_cifar_bin(tmp_path / "cifar")
    result = danlu.train("cifar10-fast", [f"data.root={tmp_path / 'cifar'}", "train.epochs=1", "train.amp=bf16",
                                          "train.batch_size=32", "model.stem=8", "model.widths=[16,16]"],
                         runs_dir=tmp_path / "runs", progress=False, plots=False)
    assert set(seen) == ({torch.bfloat16} if native == "1" else {None})
    assert 0.0 <= result.metrics["accuracy"] <= 1.0
    # the saved weights are fp32 and the test metrics are recomputed the same by a fresh evaluation
    from safetensors.torch import load_file

    assert {t.dtype for t in load_file(result.run / "model.safetensors").values()} <= {torch.float32, torch.int64}


@pytest.mark.parametrize("loader", ["memory", "stream"])
def test_normalize_false_keeps_pixels_in_unit_range_for_both_loaders(cli, tmp_path, loader):
    """data.normalize=false: mean 0 and std 1 in the schema, so the model, predict and serve see pixels / 255."""
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path / "shapes"
    for split, n in (("train", 6), ("test", 2)):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (16, 16, 3)).astype(np.uint8)).save(root / split / c / f"{i}.png")
    code, out, err = cli("train", "imagefolder-cnn", f"data.root={root}", "data.image_size=16", "train.epochs=1",
                         f"data.loader={loader}", "data.normalize=false", "model.channels=[4]", "model.hidden=[8]",
                         "--json", "--quiet")
    assert code == 0, err
    schema = json.loads((Path(last_json(out)["run"]) / "schema.json").read_text())
    assert schema["mean"] == [0.0, 0.0, 0.0] and schema["std"] == [1.0, 1.0, 1.0]
    code, out, err = cli("train", "imagefolder-cnn", f"data.root={root}", "data.image_size=16", "train.epochs=1",
                         f"data.loader={loader}", "model.channels=[4]", "model.hidden=[8]", "--json", "--quiet")
    assert code == 0, err
    assert json.loads((Path(last_json(out)["run"]) / "schema.json").read_text())["mean"] != [0.0, 0.0, 0.0]


def test_a_cpu_without_bf16_says_once_that_the_step_stays_fp32(monkeypatch, caplog):
    import logging

    import danlu.inference as inference

    monkeypatch.setenv("DANLU_CPU_BF16", "0")
    monkeypatch.setitem(inference._SAID, "no_bf16", False)
    with caplog.at_level(logging.WARNING, logger="danlu"):
        for _ in range(3):
            assert inference.step_amp_dtype(torch.device("cpu"), "bf16") is None
    said = [r.getMessage() for r in caplog.records if "native bf16" in r.getMessage()]
    assert len(said) == 1 and "fp32" in said[0]
