"""danlu.scratch against torch.autograd (values and gradients to 1e-6 in float64), against finite
differences (relative error ≤ 1e-7), and on real data (sklearn digits ≥ 96 %); plus the worked example."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from danlu import scratch as s
from danlu.scratch.worked_example import as_json, worked_example

TOL = dict(rtol=1e-6, atol=1e-6)


def t(a: np.ndarray, grad: bool = False) -> torch.Tensor:
    return torch.tensor(a, dtype=torch.float64, requires_grad=grad)


def close(a, b) -> None:
    np.testing.assert_allclose(np.asarray(a), b.detach().numpy() if isinstance(b, torch.Tensor) else b, **TOL)


ACTIVATIONS = [(s.Sigmoid, torch.sigmoid), (s.Tanh, torch.tanh), (s.ReLU, torch.relu),
               (s.Softmax, lambda x: torch.softmax(x, dim=-1))]


@pytest.mark.parametrize(("layer", "ref"), ACTIVATIONS, ids=["sigmoid", "tanh", "relu", "softmax"])
def test_activation_matches_autograd(layer, ref):
    rng = np.random.default_rng(1)
    x, g = rng.normal(size=(7, 5)) * 3, rng.normal(size=(7, 5))
    op = layer()
    y = op.forward(x)
    dx = op.backward(g)
    xt = t(x, grad=True)
    yt = ref(xt)
    (yt * t(g)).sum().backward()
    close(y, yt)
    close(dx, xt.grad)


def test_dense_matches_autograd():
    rng = np.random.default_rng(2)
    x, g = rng.normal(size=(6, 4)), rng.normal(size=(6, 3))
    layer = s.Dense(4, 3, seed=5)
    w, b = t(layer.weight.value, True), t(layer.bias.value, True)
    y = layer.forward(x)
    dx = layer.backward(g)
    xt = t(x, grad=True)
    yt = xt @ w + b
    (yt * t(g)).sum().backward()
    close(y, yt)
    close(dx, xt.grad)
    close(layer.weight.grad, w.grad)
    close(layer.bias.grad, b.grad)
    layer.backward(g)  # gradients accumulate until zero_grad, as autograd's do
    close(layer.weight.grad, 2 * w.grad)


def _int_labels(rng, n, k):
    return rng.integers(0, k, n)


LOSSES = {
    "mse": (lambda: s.MSE(), lambda p, y: F.mse_loss(p, y), lambda rng: rng.normal(size=(8, 3))),
    "mse-half": (lambda: s.MSE(half=True), lambda p, y: 0.5 * F.mse_loss(p, y), lambda rng: rng.normal(size=(8, 3))),
    "bce": (lambda: s.BinaryCrossEntropy(), F.binary_cross_entropy_with_logits,
            lambda rng: rng.integers(0, 2, (8, 1)).astype(float)),
    "bce-soft": (lambda: s.BinaryCrossEntropy(), F.binary_cross_entropy_with_logits,
                 lambda rng: rng.uniform(size=(8, 1))),
    "ce-index": (lambda: s.CrossEntropy(), F.cross_entropy, None),
    "ce-probs": (lambda: s.CrossEntropy(), F.cross_entropy, lambda rng: rng.dirichlet(np.ones(3), 8)),
}


@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize("scale", [1.0, 200.0], ids=["plain", "huge-logits"])
def test_loss_matches_autograd(name, scale):
    make, ref, target = LOSSES[name]
    rng = np.random.default_rng(3)
    width = 1 if name.startswith("bce") else 3
    pred = rng.normal(size=(8, width)) * scale
    y = target(rng) if target else _int_labels(rng, 8, 3)
    loss = make()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow, no log(0), even at logits of ±600
        value = loss.forward(pred, y)
        grad = loss.backward()
    pt = t(pred, grad=True)
    yt = torch.tensor(y) if y.dtype.kind == "i" else t(y)
    out = ref(pt, yt)
    out.backward()
    assert np.isfinite(value)
    close(value, out)
    close(grad, pt.grad)


def test_sigmoid_is_stable_at_extremes():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = s.sigmoid(np.array([-1000.0, -40.0, 0.0, 40.0, 1000.0]))
    close(y, torch.sigmoid(t(np.array([-1000.0, -40.0, 0.0, 40.0, 1000.0]))))


def _grads(n_params, steps, rng):
    return [[rng.normal(size=(4, 3)), rng.normal(size=3)][:n_params] for _ in range(steps)]


OPTIMIZERS = {
    "sgd": (lambda p: s.SGD(p, lr=0.1), lambda p: torch.optim.SGD(p, lr=0.1)),
    "sgd-momentum": (lambda p: s.SGD(p, lr=0.1, momentum=0.9), lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)),
    "sgd-nesterov-wd": (lambda p: s.SGD(p, lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.01),
                        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.01)),
    "adam": (lambda p: s.Adam(p, lr=0.01), lambda p: torch.optim.Adam(p, lr=0.01)),
    "adam-wd": (lambda p: s.Adam(p, lr=0.003, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1),
                lambda p: torch.optim.Adam(p, lr=0.003, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_matches_torch_step_for_step(name):
    ours, theirs = OPTIMIZERS[name]
    rng = np.random.default_rng(4)
    start = [rng.normal(size=(4, 3)), rng.normal(size=3)]
    params = [s.Parameter(a.copy()) for a in start]
    tparams = [torch.nn.Parameter(t(a)) for a in start]
    opt, topt = ours(params), theirs(tparams)
    for grads in _grads(2, 6, rng):
        for p, tp, g in zip(params, tparams, grads, strict=True):
            p.grad[...] = g
            tp.grad = t(g)
        opt.step()
        topt.step()
        for p, tp in zip(params, tparams, strict=True):
            close(p.value, tp)


def test_training_matches_torch():
    """A whole mini-batch loop (MLP, cross-entropy, Adam) follows torch's to 1e-6 after 3 epochs."""
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(40, 6)), rng.integers(0, 3, 40)
    model = s.Sequential(s.Dense(6, 8, seed=1), s.Tanh(), s.Dense(8, 3, seed=2))
    tw = [torch.nn.Parameter(t(p.value)) for p in model.parameters()]
    topt = torch.optim.Adam(tw, lr=0.01)
    history = s.fit(model, s.CrossEntropy(), s.Adam(model.parameters(), lr=0.01), x, y, epochs=3, batch_size=16,
                    seed=7)
    order_rng = np.random.default_rng(7)
    for epoch in range(3):
        total = 0.0
        for idx in s.batches(len(x), 16, order_rng):
            topt.zero_grad()
            logits = torch.tanh(t(x[idx]) @ tw[0] + tw[1]) @ tw[2] + tw[3]
            loss = F.cross_entropy(logits, torch.tensor(y[idx]))
            loss.backward()
            topt.step()
            total += loss.item() * len(idx)
        assert history[epoch] == pytest.approx(total / len(x), rel=1e-6)
    for p, tp in zip(model.parameters(), tw, strict=True):
        close(p.value, tp)


@pytest.mark.parametrize("loss_name", ["mse", "bce", "ce-index", "ce-probs"])
def test_finite_differences(loss_name):
    """Every parameter's and the input's gradient through all five layer kinds, to a relative error ≤ 1e-7."""
    rng = np.random.default_rng(6)
    make, _, target = LOSSES[loss_name]
    out = 1 if loss_name == "bce" else 3
    layers = [s.Dense(5, 6, seed=1), s.Tanh(), s.Dense(6, 6, seed=2), s.ReLU(), s.Dense(6, 4, seed=3), s.Sigmoid(),
              s.Dense(4, out, seed=4)]
    if loss_name == "mse":
        layers.append(s.Softmax())
    model = s.Sequential(*layers)
    x = rng.normal(size=(5, 5))
    y = target(rng)[:5] if target else _int_labels(rng, 5, 3)
    loss = make()

    def f() -> float:
        return loss.forward(model.forward(x), y)

    model.zero_grad()
    f()
    dx = model.backward(loss.backward())
    for p in model.parameters():
        assert s.relative_error(p.grad, s.numerical_grad(f, p.value)) <= 1e-7, p
    assert s.relative_error(dx, s.numerical_grad(f, x)) <= 1e-7


def test_trains_digits_to_96_percent():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x / 16.0, y, test_size=0.2, random_state=0, stratify=y)
    model = s.Sequential(s.Dense(64, 64, seed=0), s.ReLU(), s.Dense(64, 10, seed=1))
    history = s.fit(model, s.CrossEntropy(), s.Adam(model.parameters(), lr=3e-3), x_train, y_train, epochs=30,
                    batch_size=32)
    assert history[-1] < history[0] / 10
    assert s.accuracy(model, x_test, y_test) >= 0.96


def test_fit_rejects_mismatched_rows():
    model = s.Sequential(s.Dense(2, 1))
    with pytest.raises(ValueError, match="3 rows, y has 2"):
        s.fit(model, s.MSE(), s.SGD(model.parameters()), np.zeros((3, 2)), np.zeros(2))


def _step(name: str, title: str = "Article 1") -> dict:
    sections = as_json(worked_example())["sections"]
    section = next(sec for sec in sections if sec["title"].startswith(title))
    return next(st for st in section["steps"] if st["name"].startswith(name))


def test_worked_example_catches_the_articles_mistakes():
    sigma = _step("σ(0.4)")
    assert sigma["value"] == pytest.approx(0.598688, abs=1e-6) and sigma["article"] == 0.6321 and sigma["differs"]
    assert 1 - np.exp(-1) == pytest.approx(0.6321, abs=1e-4)
    z31, a11 = _step("∂L/∂z31")["value"], _step("a11")["value"]
    update = _step("θ31 new")
    assert update["value"] == pytest.approx(0.01 - 0.001 * z31 * a11) and update["differs"]
    assert update["article_rule"] == pytest.approx(0.01 - 0.001 * z31)
    # the same network in torch: one step of SGD on ½(y − ŷ)²
    x = t(np.array([1.0, 2.0, 3.0]))
    w1, b1 = t(np.full((3, 2), 0.01), True), t(np.full(2, 0.1), True)
    w2, b2 = t(np.full((2, 1), 0.01), True), t(np.full(1, 0.1), True)
    a = torch.sigmoid(torch.sigmoid(x @ w1 + b1) @ w2 + b2)
    (0.5 * (1 - a) ** 2).sum().backward()
    assert _step("a31")["value"] == pytest.approx(a.item(), rel=1e-12)
    assert update["value"] == pytest.approx((w2 - 0.001 * w2.grad)[0, 0].item(), rel=1e-12)
    assert _step("θ13 new")["value"] == pytest.approx((w1 - 0.001 * w1.grad)[2, 0].item(), rel=1e-12)
    for st in as_json(worked_example())["sections"][0]["steps"]:
        if st["check"] is not None:
            assert st["value"] == pytest.approx(st["check"], rel=1e-7), st["name"]


def test_worked_example_sigmoid_cross_entropy_delta():
    for st in as_json(worked_example())["sections"][1]["steps"]:
        assert st["value"] == pytest.approx(st["check"], rel=1e-7)  # ŷ − y is the derivative
        assert st["differs"]  # (ŷ − y)·σ'(z) is not


def test_worked_example_regression_reaches_y_equals_2x():
    assert _step("after", "Article 4")["value"] == pytest.approx(2.0, abs=1e-5)
    assert _step("prediction", "Article 4")["value"] == pytest.approx(20.0, abs=1e-4)


def test_cli_worked_example(cli):
    code, out, _ = cli("scratch", "worked-example")
    assert code == 0
    assert "0.5986877" in out and "0.6321" in out
    marked = [line for line in out.splitlines() if line.startswith("✗")]
    assert any("σ(0.4)" in line for line in marked) and any("θ31 new" in line for line in marked)
    code, out, _ = cli("scratch", "worked-example", "--json")
    assert code == 0 and json.loads(out)["mistakes"] == 6


def test_engine_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, danlu.scratch, danlu.scratch.worked_example; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
