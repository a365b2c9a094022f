"""DP-SGD (danlu/training/privacy.py): clipping and noise as configured, ε from Opacus' accountant, refusals before
any file is written, and a private run that is a normal run (predict, export)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.conftest import last_json

opacus = pytest.importorskip("opacus")

from danlu.errors import DanluError  # noqa: E402
from danlu.recipe import load_recipe  # noqa: E402

PRIVATE = ["model.batch_norm=false", "model.hidden=[32]", "model.dropout=0", "train.epochs=1",
           "train.schedule=none"]


# two convs: the second one's input has 8 channels, where a channels-last layout differs from NCHW
CNN = ["model.name=cnn", "model.channels=[8,16]", "model.kernel_size=3", "model.padding=same", "model.pool=2",
       "model.activation=tanh"]


def _private_loop(*overrides: str):
    from danlu.prepare import prepare
    from danlu.training.loop import build_loop

    recipe = load_recipe("digits-mlp", [*PRIVATE, *overrides])
    splits, schema, model = prepare(recipe)
    return build_loop(model, splits, schema, recipe, [])


def _per_sample_clipped_sum(model: nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor, clip: float):
    """Σ_i clip(∇ℓ_i) computed the slow way (one backward per example), and the per-sample norms after clipping."""
    params = [p for p in model.parameters() if p.requires_grad]
    total = [torch.zeros_like(p) for p in params]
    norms = []
    for i in range(len(y)):
        grads = torch.autograd.grad(loss_fn(model(x[i:i + 1]), y[i:i + 1]), params)
        norm = torch.sqrt(sum((g ** 2).sum() for g in grads))
        factor = min(1.0, clip / (float(norm) + 1e-6))
        norms.append(float(norm) * factor)
        for t, g in zip(total, grads, strict=True):
            t += g * factor
    return total, norms


@pytest.mark.parametrize("model", [[], CNN], ids=["mlp", "cnn"])
def test_per_sample_gradients_clipped_and_noise_has_configured_scale(model):
    """With σ = 0 the DP gradient is exactly Σ clip(∇ℓ_i) / B (each clipped norm ≤ C); with σ = 2 the rest is
    Gaussian noise of std σ·C/B. Runs through danlu's own loop pieces: Poisson loader, danlu's Adam wrapped.
    The CNN case trains channels-last, whose conv per-sample gradients Opacus alone computes scrambled."""
    clip = 0.05  # well below the digits models' per-sample norms, so clipping really bites
    loop = _private_loop(*model, "train.privacy.noise_multiplier=0", f"train.privacy.max_grad_norm={clip}")
    assert loop.train_loader.poisson and type(loop.optimizer).__name__ == "DPOptimizer"
    assert type(loop.optimizer.original_optimizer).__module__ == "danlu.training.optim"
    x, y = next(iter(loop.train_loader))
    if model:  # the conv net trains channels-last, as without privacy: the layout Opacus alone gets wrong
        second = [m for m in loop.model.modules() if isinstance(m, nn.Conv2d)][1].weight  # 8 input channels
        assert second.is_contiguous(memory_format=torch.channels_last) and not second.is_contiguous()
    params = [p for p in loop.model.parameters()]
    expected, norms = _per_sample_clipped_sum(loop.model, loop.step.criterion, x, y, clip)
    assert max(norms) <= clip * (1 + 1e-4) and min(norms) > 0.5 * clip
    B = loop.optimizer.expected_batch_size
    loss, _ = loop.step(x, y)
    loop.optimizer.zero_grad()
    loss.backward()
    assert loop.optimizer.pre_step()  # clip, accumulate, noise, scale; the wrapped optimizer's step not taken
    for p, e in zip(params, expected, strict=True):
        torch.testing.assert_close(p.grad * B, e, rtol=1e-4, atol=1e-6)

    sigma = 2.0
    loop.optimizer.noise_multiplier = sigma
    loss, _ = loop.step(x, y)
    loop.optimizer.zero_grad()
    loss.backward()
    loop.optimizer.pre_step()
    noise = torch.cat([(p.grad * B - e).reshape(-1) for p, e in zip(params, expected, strict=True)])
    assert noise.numel() > 2000
    assert abs(float(noise.std()) / (sigma * clip) - 1) < 0.06
    assert abs(float(noise.mean())) < 0.1 * sigma * clip


def test_poisson_loader_draws_each_sample_with_rate_q():
    from danlu.data.tensors import TensorLoader, TensorSplit

    split = TensorSplit(torch.zeros(2000, 3), torch.zeros(2000, dtype=torch.long))
    loader = TensorLoader(split, 100, kind="tabular", shuffle=True, generator=torch.Generator().manual_seed(0),
                          poisson=True)
    sizes = [len(y) for _ in range(5) for _, y in loader]
    assert len(loader) == 20 and len(sizes) == 100
    assert len(set(sizes)) > 5  # batch sizes vary: sampling is per sample, not a fixed-size shuffle
    assert abs(sum(sizes) / len(sizes) - 100) < 5  # q · N in expectation (std of the mean ≈ 1)


def test_epsilon_1_gives_smaller_epsilon_than_8_and_matches_the_accountant(cli):
    """Two private digits runs; each run's reported ε is Opacus' RDP accountant recomputed from the run's
    saved (σ, q, steps), within its target, and the stricter budget got more noise."""
    from opacus.accountants import RDPAccountant

    spent = {}
    for eps in (1, 8):
        code, out, err = cli("train", "digits-mlp", *PRIVATE, f"train.privacy.epsilon={eps}", "--json", "--quiet")
        assert code == 0, err
        run = Path(last_json(out)["run"])
        p = json.loads((run / "report.json").read_text())["privacy"]
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        acc = RDPAccountant()
        acc.history = [(p["noise_multiplier"], p["sample_rate"], p["steps"])]
        assert p["epsilon"] == pytest.approx(acc.get_epsilon(delta=p["delta"]), rel=1e-9)
        assert rows[-1]["epsilon"] == pytest.approx(p["epsilon"], rel=1e-9)
        assert p["epsilon"] <= eps and p["epsilon"] > 0.9 * eps  # calibrated to the target, not far below
        assert p["delta"] == pytest.approx(1 / (10 * p["n_train"])) and p["sample_rate"] == 64 / p["n_train"]
        assert p["steps"] == round(p["n_train"] / 64) and p["accountant"] == "rdp"
        assert p["opacus"] == opacus.__version__ and p["not_covered"]
        md = (run / "report.md").read_text()
        assert "## Differential privacy" in md and "RDP accountant" in md and "hyperparameter search" in md
        spent[eps] = p
    assert spent[1]["epsilon"] < spent[8]["epsilon"]
    assert spent[1]["noise_multiplier"] > spent[8]["noise_multiplier"]

    # the run folder is a normal run: predict and export work on it
    from danlu.predictor import Predictor

    rows = Predictor.load(run).predict([torch.zeros(8, 8, dtype=torch.uint8).numpy()])
    assert len(rows) == 1 and rows[0]["top"]
    code, out, err = cli("export", str(run), "--json")
    assert code == 0, err


def test_noise_multiplier_0_clips_only_and_the_run_finishes_with_an_infinite_epsilon(cli):
    """σ = 0 (clipping without noise, to see what clipping alone costs) once failed after its first epoch:
    ε = inf in metrics.jsonl is not JSON. The epoch rows leave ε out; the report says ∞ and no guarantee."""
    code, out, err = cli("train", "digits-mlp", *PRIVATE, "train.privacy.epsilon=null",
                         "train.privacy.noise_multiplier=0", "--json", "--quiet")
    assert code == 0, err
    run = Path(last_json(out)["run"])
    p = json.loads((run / "report.json").read_text())["privacy"]
    assert p["epsilon"] is None and p["noise_multiplier"] == 0
    assert all("epsilon" not in json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines())
    assert "ε = ∞ (no noise: no privacy guarantee)" in (run / "report.md").read_text()


@pytest.mark.parametrize("overrides, said, fix", [
    (["train.privacy.epsilon=3", "train.privacy.delta=0.01"], "not below 1/N", "delta: auto"),
    (["train.privacy.epsilon=1e-9"], "cannot be reached", "raise train.privacy.epsilon"),
    (["train.privacy.epsilon=3", "model.batch_norm=true"], "BatchNorm", "model.norm=group"),
    (["train.privacy.epsilon=3", "model.norm=batch"], "BatchNorm", "model.norm=group"),
    (["train.privacy.epsilon=3", "train.grad_clip=1"], "per-sample clipping", "max_grad_norm"),
    (["train.privacy.max_grad_norm=1"], "exactly one of epsilon and noise_multiplier", "noise_multiplier"),
])
def test_bad_privacy_input_exits_2_with_reason_and_fix_and_writes_nothing(cli, tmp_path, overrides, said, fix):
    code, out, err = cli("train", "digits-mlp", *PRIVATE, *overrides)
    assert code == 2
    assert said in err and fix in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_group_norm_trains_privately_where_batchnorm_is_refused(cli):
    """digits-mlp as built in has BatchNorm; model.norm=group (the refusal's fix) trains with DP-SGD."""
    code, out, err = cli("train", "digits-mlp", *PRIVATE, "model.norm=group", "model.hidden=[32,16]",
                         "train.privacy.noise_multiplier=1", "--json", "--quiet")
    assert code == 0, err
    run = Path(last_json(out)["run"])
    assert json.loads((run / "report.json").read_text())["privacy"]["epsilon"] > 0
    assert "norm: group" in (run / "recipe.yaml").read_text()


def test_lstm_becomes_opacus_dp_lstm_with_the_same_weights_and_outputs():
    from opacus.layers import DPLSTM

    from danlu.training.privacy import check_model

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.rnn, self.out = nn.Embedding(20, 8), nn.LSTM(8, 6, batch_first=True), nn.Linear(6, 3)

        def forward(self, ids):
            return self.out(self.rnn(self.emb(ids))[0][:, -1])

    torch.manual_seed(0)
    model = Tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ids = torch.randint(0, 20, (4, 7))
    want = model(ids)
    notes = check_model(model, "lstm")
    assert isinstance(model.rnn, DPLSTM) and "DP LSTM" in notes[0]
    torch.testing.assert_close(model(ids), want, rtol=1e-5, atol=1e-6)
    plain = Tiny()
    assert set(model.state_dict()) == set(before)  # saved under the plain names only (Opacus saved both nested)
    plain.load_state_dict(model.state_dict())  # a private run's weights load into the plain model at inference
    torch.testing.assert_close(plain(ids), want, rtol=1e-5, atol=1e-6)
    again = Tiny()
    check_model(again, "lstm")
    again.load_state_dict(before)  # and a checkpoint into the private model (--resume)
    torch.testing.assert_close(again(ids), want, rtol=1e-5, atol=1e-6)


def test_transformer_is_refused_with_the_reason():
    from danlu.training.privacy import check_model

    with pytest.raises(DanluError, match="per-sample gradients") as e:
        check_model(nn.Linear(2, 2), "transformer")
    assert "lstm" in e.value.hint


def test_privacy_off_by_default_and_opacus_not_imported_without_it():
    import subprocess
    import sys

    assert load_recipe("digits-mlp").train.privacy is None
    code = ("import sys, danlu.api, danlu.training.loop, danlu.cli.dispatch; from danlu.recipe import load_recipe; "
            "load_recipe('mnist-cnn-dp'); print('opacus' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
    assert math.isclose(load_recipe("mnist-cnn-dp").train.privacy.epsilon, 3.0)


def test_private_lstm_run_trains_and_predicts_with_the_plain_lstm(cli, tmp_path):
    """The built-in lstm recipe on generated texts, privately: its LSTMs train as DP LSTMs, the run's weights
    load into the plain model for predict, and the report says which layers were swapped."""
    pos, neg = ["很好很好", "非常满意", "干净舒服"], ["很差很差", "非常失望", "又脏又吵"]
    rows = [("pos", t) for t in pos] * 10 + [("neg", t) for t in neg] * 10
    train = tmp_path / "train.tsv"
    train.write_text("label\ttext\n" + "\n".join(f"{a}\t{b}" for a, b in rows) + "\n", encoding="utf-8")
    code, out, err = cli("train", "chnsenticorp-lstm", "data.name=text", f"data.path={train}", "data.val_fraction=0",
                         "data.test_fraction=0.2", "data.max_len=null", "train.epochs=2", "train.batch_size=8",
                         "train.privacy.noise_multiplier=0.5", "train.grad_clip=null", "--json", "--quiet")
    assert code == 0, err
    run = Path(last_json(out)["run"])
    p = json.loads((run / "report.json").read_text())["privacy"]
    assert any("DP LSTM" in n for n in p["notes"]) and p["epsilon"] > 0
    code, out, err = cli("predict", str(run), "很好很好", "--json")
    assert code == 0, err
    assert json.loads(out)["predictions"][0]["top"]
