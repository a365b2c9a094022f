"""fast_resnet's optional fast-CIFAR tricks: patch whitening (fit once, frozen, saved), lookahead (its math and
its resume), flip+translate TTA, and recipes without the options building the same net as before."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

import danlu
from danlu.models.fast import FastResNet, flops_per_sample
from danlu.models.whitening import PatchWhitening
from danlu.training.hooks import Callback
from danlu.training.lookahead import Lookahead
from tests.test_cifar_fast import _write_cifar_bin

SMALL = ["train.batch_size=32", "train.lr=0.05", "train.warmup_epochs=0", "model.stem=8", "model.widths=[16,16]",
         "model.residual=true", "data.val_fraction=0.1"]


def _correlated_images(n: int = 300, seed: int = 0) -> torch.Tensor:
    """Smooth, channel-correlated images: their 2x2 patches are far from white."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, 1, 18, 18, generator=g)
    smooth = nn.functional.avg_pool2d(nn.functional.interpolate(base, scale_factor=2, mode="bilinear"), 3, 1)
    mix = torch.tensor([[1.0], [0.8], [0.5]])
    return 2.0 * (mix.view(1, 3, 1, 1) * smooth) + 0.3 * torch.randn(n, 3, 34, 34, generator=g) + 1.5


def test_whitening_output_covariance_is_identity_on_its_data():
    x = _correlated_images()
    layer = PatchWhitening(3, 2, eps=1e-8)
    before = layer.weight.clone()
    layer.fit(x)
    assert not layer.weight.requires_grad and layer.bias.requires_grad
    assert not torch.equal(layer.weight, before) and layer.out_channels == 24
    with torch.no_grad():
        out = layer(x).double()
    half = out[:, :12].permute(0, 2, 3, 1).reshape(-1, 12)  # the other half is its negation
    torch.testing.assert_close(out[:, 12:], -out[:, :12])
    cov = torch.cov(half.T)
    torch.testing.assert_close(cov, torch.eye(12, dtype=torch.float64), atol=1e-4, rtol=0)
    raw = nn.functional.unfold(x, 2).transpose(1, 2).reshape(-1, 12).double()
    assert torch.cov(raw.T).diagonal().max() > 3 * torch.cov(raw.T).diagonal().min()  # it had work to do


def test_whitening_refuses_too_few_patches():
    from danlu.errors import DataError

    with pytest.raises(DataError, match="patches"):
        PatchWhitening(3, 2).fit(torch.randn(1, 3, 3, 3))


class FitCounter:
    """Counts FastResNet.fit_to_data calls across runs (the callback is built inside danlu.train)."""

    def __init__(self, monkeypatch):
        self.calls = 0
        original = FastResNet.fit_to_data

        def counted(model, x):
            self.calls += 1
            assert x.ndim == 4 and x.dtype == torch.float32 and len(x) > 0
            original(model, x)

        monkeypatch.setattr(FastResNet, "fit_to_data", counted)


class InterruptAfter(Callback):
    """Ctrl-C at the end of epoch ``epoch``, before that epoch's checkpoint is written."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_end(self, loop, metrics):
        if loop.epoch == self.epoch:
            raise KeyboardInterrupt


def _train(tmp_path: Path, name: str, overrides: list[str], callbacks=()):
    return danlu.train("cifar10-fast-resnet", [f"data.root={tmp_path / 'cifar'}", *SMALL, *overrides],
                       runs_dir=tmp_path / name, progress=False, plots=False, callbacks=list(callbacks))


def test_whitened_run_fits_once_saves_frozen_weights_and_predict_reuses_them(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from danlu.predictor import Predictor

    _write_cifar_bin(tmp_path / "cifar")
    counter = FitCounter(monkeypatch)
    res = _train(tmp_path, "runs", ["train.epochs=2", "model.whiten=2", "model.tta=flip_translate"])
    assert counter.calls == 1
    saved = load_file(str(res.run / "model.safetensors"))
    w = saved["whiten.weight"]
    assert w.shape == (24, 3, 2, 2) and torch.equal(w[12:], -w[:12])  # fitted: ± eigenvector filters
    predictor = Predictor.load(res.run)
    assert torch.equal(predictor.model.whiten.weight, w) and not predictor.model.whiten.weight.requires_grad
    assert predictor.model.tta == "flip_translate"
    images = np.random.default_rng(0).integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)
    assert len(predictor.predict(list(images))) == 2


def test_whitening_is_not_refit_on_resume_and_lookahead_resumes_exactly(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    _write_cifar_bin(tmp_path / "cifar")
    counter = FitCounter(monkeypatch)
    opts = ["train.epochs=3", "model.whiten=2", "train.lookahead.every=3", "train.lookahead.ramp=1"]
    full = _train(tmp_path, "a", opts)
    assert counter.calls == 1
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path, "b", opts, [InterruptAfter(2)])
    assert counter.calls == 2
    run = next((tmp_path / "b").iterdir())
    resumed = danlu.train(resume=run, progress=False, plots=False)
    assert counter.calls == 2  # the checkpoint holds the fitted layer
    assert resumed.metrics == full.metrics
    a, b = load_file(str(full.run / "model.safetensors")), load_file(str(run / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_lookahead_matches_a_hand_computation():
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    total, la = 8, Lookahead(every=3, alpha=0.6, ramp=2.0)
    loop = SimpleNamespace(model=model, total_steps=total)
    tensors = lambda: {k: v.clone() for k, v in model.state_dict().items()}  # noqa: E731
    slow, live = tensors(), tensors()
    torch.manual_seed(0)
    for epoch_steps in (5, 3):
        la.on_epoch_start(loop, epoch_steps)
        for i in range(1, epoch_steps + 1):
            with torch.no_grad():  # an "optimizer step" and BN's statistics moving
                for t in [*model.parameters(), model[1].running_mean]:
                    t.add_(torch.randn_like(t))
                model[1].num_batches_tracked += 1
            live = tensors()
            la.after_step(loop, 0.0)
            step = la.step
            if step % 3 == 0 or i == epoch_steps:  # pulls at steps 3, 5 (epoch end), 6, 8
                d = 0.6 * (step / total) ** 2
                for k in slow:
                    if slow[k].is_floating_point():
                        slow[k] = d * slow[k] + (1 - d) * live[k]
                expect = {k: slow[k] if slow[k].is_floating_point() else live[k] for k in slow}
            else:
                expect = live
            for k, v in model.state_dict().items():
                torch.testing.assert_close(v, expect[k], msg=f"{k} after step {step}")
    assert la.step == 8 and la.state_dict() == {"lookahead_step": 8}
    other = Lookahead()
    other.load_state_dict(la.state_dict())
    assert other.step == 8 and other.decay(8, total) == pytest.approx(0.77)


def _shifted(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """The image moved by (dy, dx), reflected border, one image and pixel index at a time (numpy)."""
    a = x.numpy()
    out = np.empty_like(a)
    h, w = a.shape[2:]
    padded = np.pad(a, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="reflect")
    for i in range(h):
        for j in range(w):
            out[:, :, i, j] = padded[:, :, i - dy + 1, j - dx + 1]
    return torch.from_numpy(out)


def test_flip_translate_is_the_mean_of_the_explicit_views():
    torch.manual_seed(0)
    model = FastResNet([3, 16, 16], 5, stem=4, widths=[8, 8], tta="flip_translate").eval()
    x = torch.randn(4, 3, 16, 16)
    got = model(x)
    model.tta = "none"
    views = [x, x.flip(3)]
    views += [_shifted(v, d, d) for d in (1, -1) for v in views]
    assert torch.equal(views[2][:, :, 1:, 1:], x[:, :, :-1, :-1])  # down-right by one pixel
    torch.testing.assert_close(got, torch.stack([model(v) for v in views]).mean(0))
    model.train()
    assert model(x).shape == (4, 5)  # training sees one view


def test_options_off_build_the_old_net():
    """No option given: the same modules, weights' names and shapes, and TTA as before the options existed."""
    from danlu.models import build
    from danlu.models.specs import option_help
    from danlu.schema import Schema

    schema = Schema("image", "classification", [3, 32, 32], classes=[str(i) for i in range(10)])
    opts = {"stem": 16, "widths": [32, 64, 128], "residual": [True, False, True]}
    model = build("fast_resnet", opts, schema)
    names = list(model.state_dict())
    assert names[0] == "features.0.weight" and not any("whiten" in n for n in names)
    assert model.tta == "flip" and model.tta_flip and model.logit_scale == 1.0 and model.head[-1].bias is not None
    assert not model.fits_to_data and not any(isinstance(m, nn.GELU) for m in model.modules())
    assert flops_per_sample(model, [3, 32, 32]) == 48_073_216 and model.tta == "flip"
    assert build("fast_resnet", {**opts, "tta_flip": False}, schema).tta == "none"
    help_text = option_help("fast_resnet")
    for option in ("whiten=0", "activation='relu'", "logit_scale=1.0", "head_bias=True", "tta=None"):
        assert option in help_text
    new = build("fast_resnet", {**opts, "whiten": 2, "activation": "gelu", "logit_scale": 0.125, "head_bias": False},
                schema)
    assert new.fits_to_data and new.head[-1].bias is None and new.whiten.out_channels == 24
    assert new(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_bad_options_are_recipe_errors():
    from danlu.errors import RecipeError
    from danlu.recipe import load_recipe

    with pytest.raises(RecipeError, match="tta"):
        load_recipe("cifar10-fast", ["model.tta=mirror"])
    with pytest.raises(RecipeError, match="alpha"):
        load_recipe("cifar10-fast", ["train.lookahead.alpha=1.5"])


def test_training_sample_is_seeded_unaugmented_and_leaves_the_run_generator_alone():
    from danlu.data.tensors import TensorLoader, TensorSplit
    from danlu.recipe import load_recipe
    from danlu.schema import Schema
    from danlu.training.fit_to_data import training_sample

    schema = Schema("image", "classification", [3, 8, 8], classes=["a", "b"], mean=[0.5] * 3, std=[0.25] * 3)
    split = TensorSplit(torch.randint(0, 256, (50, 3, 8, 8), dtype=torch.uint8), torch.zeros(50, dtype=torch.long))
    gen = torch.Generator().manual_seed(7)
    loader = TensorLoader(split, 16, kind="image", shuffle=True, generator=gen)
    loop = SimpleNamespace(train_loader=loader, schema=schema, recipe=load_recipe("cifar10-fast-resnet"))
    before = gen.get_state()
    x = training_sample(loop, 20, seed=3)
    assert x.shape == (20, 3, 8, 8) and torch.equal(gen.get_state(), before)
    sharded = SimpleNamespace(train_loader=SimpleNamespace(inner=loader), schema=schema, recipe=loop.recipe)
    assert torch.equal(training_sample(sharded, 20, seed=3), x)  # every rank of a distributed run: the same
    reference = (split.x.float() / 255 - 0.5) / 0.25
    gap, rows = (x[:, None] - reference[None]).abs().flatten(2).amax(-1).min(1)
    assert gap.max() < 1e-5 and len(set(rows.tolist())) == 20  # normalized, not augmented, distinct images
    assert rows.tolist() != list(range(20))  # a random subset, not the split's first images

    class Streamed:  # a streamed folder's loader: iterated with a generator of the sample's own
        def __init__(self):
            self.generator = gen

        def __iter__(self):
            assert self.generator is not gen
            yield from ((torch.ones(8, 3, 8, 8), torch.zeros(8)) for _ in range(5))

    streamed = SimpleNamespace(train_loader=Streamed(), schema=schema, recipe=loop.recipe)
    assert training_sample(streamed, 20, seed=3).shape == (20, 3, 8, 8)
    assert streamed.train_loader.generator is gen


def test_double_stages_frozen_norm_scales_and_dirac_init():
    """block=double: conv → pool → BN → act → conv → BN → act a stage, no skip; norm_scale=false leaves every
    BN scale at 1 out of training; dirac starts each conv's first filters as the identity."""
    from danlu.models import build
    from danlu.schema import Schema

    schema = Schema("image", "classification", [3, 32, 32], classes=[str(i) for i in range(10)])
    model = build("fast_resnet", {"whiten": 2, "widths": [16, 32, 32], "block": "double", "norm_scale": False,
                                  "dirac": True, "activation": "gelu"}, schema)
    convs = [m for m in model.features.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 6 and not any(isinstance(m, nn.Module) and type(m).__name__ == "Residual"
                                       for m in model.modules())
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 6 and all(not b.weight.requires_grad and b.bias.requires_grad for b in bns)
    second = convs[1]  # 16 → 16 at 15 px: its first 16 filters are the identity
    x = torch.randn(2, 16, 15, 15)
    torch.testing.assert_close(second(x), x)
    third = convs[2]  # 16 → 32: the first 16 output channels copy the input, the others are random
    out = third(x)
    torch.testing.assert_close(out[:, :16], x)
    assert not torch.allclose(out[:, 16:], torch.zeros_like(out[:, 16:]))
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_norm_bias_lr_scale_gives_norm_shifts_their_own_lr_through_the_schedule():
    from danlu.models import build
    from danlu.recipe import load_recipe
    from danlu.schema import Schema
    from danlu.training.optim import build_optimizer, build_schedule

    schema = Schema("image", "classification", [3, 32, 32], classes=[str(i) for i in range(10)])
    recipe = load_recipe("cifar10-fast", ["train.norm_bias_lr_scale=64", "train.lr=0.5"])
    model = build("fast_resnet", dict(recipe.model.options), schema)
    opt = build_optimizer(model, recipe.train)
    shifts = {id(m.bias) for m in model.modules() if isinstance(m, nn.BatchNorm2d)}
    fast = [g for g in opt.param_groups if g["initial_lr"] == 32.0]
    assert len(fast) == 1 and {id(p) for p in fast[0]["params"]} == shifts and fast[0]["weight_decay"] == 0
    others = [p for g in opt.param_groups if g is not fast[0] for p in g["params"]]
    assert not shifts & {id(p) for p in others} and all(g["initial_lr"] == 0.5 for g in opt.param_groups
                                                         if g is not fast[0])
    sched = build_schedule(opt, recipe.train, steps_per_epoch=10)
    for _ in range(7):
        sched.step()
    assert fast[0]["lr"] == pytest.approx(64 * opt.param_groups[0]["lr"])
    default = build_optimizer(model, load_recipe("cifar10-fast-resnet").train)
    assert len(default.param_groups) == 2  # unset, the groups are the ones built before the option
