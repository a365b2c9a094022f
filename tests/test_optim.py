"""Our optimizers and schedules against torch.optim as the oracle."""

import json
import math

import pytest
import torch
from torch import nn

from danlu.recipe import TrainConfig
from danlu.training.optim import build_optimizer, build_schedule, lr_factor


def _model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))


def _torch_optimizer(model, cfg):
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return {
        "sgd": lambda: torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov),
        "adam": lambda: torch.optim.Adam(groups, lr=cfg.lr),
        "adamw": lambda: torch.optim.AdamW(groups, lr=cfg.lr),
        "rmsprop": lambda: torch.optim.RMSprop(groups, lr=cfg.lr, momentum=cfg.momentum),
    }[cfg.optimizer]()


@pytest.mark.parametrize("name, extra", [
    ("sgd", {"momentum": 0.0}), ("sgd", {"momentum": 0.9}), ("sgd", {"momentum": 0.9, "nesterov": True}),
    ("adam", {}), ("adamw", {}), ("rmsprop", {"momentum": 0.0}), ("rmsprop", {"momentum": 0.5}),
])
def test_updates_match_torch_optim(name, extra):
    cfg = TrainConfig(optimizer=name, lr=0.01, weight_decay=0.05, **extra)
    ours, ref = _model(0), _model(0)
    opt, ref_opt = build_optimizer(ours, cfg), _torch_optimizer(ref, cfg)
    x, y = torch.randn(32, 5), torch.randint(0, 3, (32,))
    for _ in range(6):
        for m, o in ((ours, opt), (ref, ref_opt)):
            o.zero_grad()
            nn.functional.cross_entropy(m(x), y).backward()
            o.step()
    for a, b in zip(ours.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_optimizer_state_round_trips():
    cfg = TrainConfig(optimizer="adam", lr=0.01)
    m1 = _model(1)
    o1 = build_optimizer(m1, cfg)
    x, y = torch.randn(16, 5), torch.randint(0, 3, (16,))
    nn.functional.cross_entropy(m1(x), y).backward()
    o1.step()
    m2 = _model(1)
    m2.load_state_dict(m1.state_dict())
    o2 = build_optimizer(m2, cfg)
    o2.load_state_dict(o1.state_dict())
    for m, o in ((m1, o1), (m2, o2)):
        o.zero_grad()
        nn.functional.cross_entropy(m(x), y).backward()
        o.step()
    for a, b in zip(m1.parameters(), m2.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", ["sgd", "adam", "rmsprop"])
def test_state_dict_has_torch_optims_layout(name):
    """Libraries that wrap an optimizer (Opacus) read and write torch's layout."""
    cfg = TrainConfig(optimizer=name, lr=0.01, weight_decay=0.05, momentum=0.9)
    ours, ref = _model(0), _model(0)
    opt, ref_opt = build_optimizer(ours, cfg), _torch_optimizer(ref, cfg)
    x, y = torch.randn(8, 5), torch.randint(0, 3, (8,))
    for m, o in ((ours, opt), (ref, ref_opt)):
        nn.functional.cross_entropy(m(x), y).backward()
        o.step()
    a, b = opt.state_dict(), ref_opt.state_dict()
    assert set(a) == set(b) == {"state", "param_groups"}
    assert sorted(a["state"]) == sorted(b["state"])
    for k in b["state"]:
        assert set(a["state"][k]) == set(b["state"][k])
        for field, t in b["state"][k].items():
            torch.testing.assert_close(a["state"][k][field].float(), torch.as_tensor(t).float())
    assert [g["params"] for g in a["param_groups"]] == [g["params"] for g in b["param_groups"]]
    assert all(ga["lr"] == gb["lr"] for ga, gb in zip(a["param_groups"], b["param_groups"], strict=True))


def test_zero_grad_honours_set_to_none():
    m = _model(0)
    opt = build_optimizer(m, TrainConfig(optimizer="sgd"))
    nn.functional.cross_entropy(m(torch.randn(4, 5)), torch.tensor([0, 1, 2, 0])).backward()
    grads = [p.grad for p in m.parameters()]
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is g and not g.any() for p, g in zip(m.parameters(), grads, strict=True))
    opt.zero_grad()
    assert all(p.grad is None for p in m.parameters())
    closure_calls = []
    assert opt.step(lambda: closure_calls.append(1) or 1.5) == 1.5 and closure_calls == [1]


def test_schedules():
    steps = 10
    cos = lr_factor(TrainConfig(epochs=2, schedule="cosine"), steps)
    assert cos(0) == pytest.approx(1.0) and cos(20) == pytest.approx(0.0, abs=1e-9)
    assert cos(10) == pytest.approx(0.5)
    warm = lr_factor(TrainConfig(epochs=2, schedule="cosine", warmup_epochs=1), steps)
    assert warm(0) == pytest.approx(0.1) and warm(9) == pytest.approx(1.0)
    one = lr_factor(TrainConfig(epochs=4, schedule="onecycle"), steps)
    peak = max(one(s) for s in range(40))
    assert peak == pytest.approx(1.0) and one(0) <= 0.1 and one(39) < 0.01
    step = lr_factor(TrainConfig(epochs=4, schedule="step", step_epochs=2, gamma=0.5), steps)
    assert [step(s) for s in (0, 19, 20, 39)] == [1.0, 1.0, 0.5, 0.5]
    model = _model(0)
    opt = build_optimizer(model, TrainConfig(lr=0.1, schedule="cosine", epochs=1))
    sched = build_schedule(opt, TrainConfig(lr=0.1, schedule="cosine", epochs=1), steps)
    for _ in range(5):
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 0.5)))


def test_pool_then_relu_equals_relu_then_pool():
    """ConvNet pools before its ReLU for speed; the two orders are the same function."""
    x = torch.randn(4, 8, 10, 10)
    a = nn.functional.relu(nn.functional.max_pool2d(x, 2))
    b = nn.functional.max_pool2d(nn.functional.relu(x), 2)
    assert torch.equal(a, b)


def test_fractional_epochs_run_a_partial_last_epoch(cli):
    cfg = TrainConfig(epochs=1.5, schedule="linear")
    assert cfg.epoch_count == 2 and cfg.total_steps(10) == 15
    f = lr_factor(cfg, 10)
    assert f(0) == pytest.approx(1.0) and f(14) == pytest.approx(1 / 15, abs=1e-6)  # decays over 15 steps
    assert TrainConfig(epochs=3).epoch_count == 3 and isinstance(TrainConfig(epochs=3).epochs, int)

    code, out, err = cli("train", "digits-mlp", "train.epochs=1.5", "train.batch_size=100", "--json")
    assert code == 0, err
    run = json.loads(out.strip().splitlines()[-1])["run"]
    rows = [json.loads(line) for line in open(f"{run}/metrics.jsonl")]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert "epoch 2/2" in err
