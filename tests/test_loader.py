"""The fast in-memory loader against the slow DataLoader path, and batch augmentation."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from danlu.data import load
from danlu.data.tensors import augment_batch, index_batches, length_bucketed_batches, trim_padding
from danlu.inference import make_loader
from danlu.recipe import AugmentConfig, load_recipe


def _folder(root, n=10):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in ("a", "b", "c"):
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (13 + i, 17, 3), dtype=np.uint8)).save(d / f"{i}.png")


def test_fast_loader_equals_slow_loader(tmp_path):
    _folder(tmp_path / "imgs")
    batches = {}
    for loader_kind in ("memory", "stream"):
        recipe = load_recipe("imagefolder-cnn", [f"data.root={tmp_path / 'imgs'}", "data.image_size=12",
                                                 f"data.loader={loader_kind}", "train.batch_size=7"])
        splits, schema = load(recipe.data, seed=0)
        gen = torch.Generator().manual_seed(0)
        cfg = load_recipe(base=recipe.to_dict(), overrides=["data.augment.flip=false", "data.augment.rotate=0",
                                                            "data.augment.scale=[1,1]", "data.augment.translate=0"])
        loader = make_loader(splits.train, schema, cfg, train=True, generator=gen, device=torch.device("cpu"),
                             channels_last=False)
        batches[loader_kind] = (list(loader), schema)
    fast, slow = batches["memory"][0], batches["stream"][0]
    # both paths estimate the same normalization from the same (all) training images
    assert batches["memory"][1].mean == batches["stream"][1].mean
    assert len(fast) == len(slow) > 1
    for (xf, yf), (xs, ys) in zip(fast, slow, strict=True):
        assert torch.equal(yf, ys)
        torch.testing.assert_close(xf, xs, rtol=0, atol=1e-6)


def test_index_batches_cover_every_sample_once():
    g = torch.Generator().manual_seed(3)
    b = index_batches(103, 10, True, g)
    assert sorted(torch.cat(b).tolist()) == list(range(103)) and len(b) == 11
    lengths = torch.randint(1, 50, (205,))
    lb = length_bucketed_batches(lengths, 16, g)
    assert sorted(torch.cat(lb).tolist()) == list(range(205))


def test_augment_keeps_shape_and_identity_when_off():
    x = torch.rand(5, 3, 16, 16)
    g = torch.Generator().manual_seed(0)
    same = augment_batch(x, AugmentConfig(), g)
    torch.testing.assert_close(same, x, atol=1e-5, rtol=0)
    flipped = augment_batch(x, AugmentConfig(flip=True, rotate=20, translate=0.1, scale=(0.8, 1.0)), g)
    assert flipped.shape == x.shape and not torch.allclose(flipped, x)


def test_trim_padding():
    ids = torch.tensor([[5, 6, 0, 0, 0], [7, 0, 0, 0, 0]])
    assert trim_padding(ids, 0).shape == (2, 2)
