"""The dynamo ONNX exporter: the tested fallback for when torch drops the legacy TorchScript exporter.

``auto`` picks legacy while torch ships it and dynamo when it is gone or fails; ``DANLU_ONNX_EXPORTER``
forces one. The dynamo exports take ~10 s each here (marked slow, kept in the suite): the same parity
check on the test split, and for a text model, parity on token sequences of every length.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import danlu.export as export
from danlu.cli.dispatch import main
from danlu.errors import DanluError
from danlu.predictor import Predictor
from tests.conftest import last_json


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> Path:
    from danlu.api import train

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DANLU_CACHE", str(tmp_path_factory.mktemp("cache")))
        return train("digits-mlp", ["train.epochs=1"], runs_dir=tmp_path_factory.mktemp("runs"), progress=False).run


def _clean(run: Path) -> Path:
    for name in ("model.onnx", "model.onnx.json"):
        (run / name).unlink(missing_ok=True)
    return run


def test_the_legacy_exporter_ships_with_this_torch():
    assert export.legacy_exporter_available()  # when this fails, auto already uses dynamo: update the docs


def _stub_exporters(monkeypatch, legacy_fails: bool = False) -> list[str]:
    """Both exporters replaced by the real legacy one (fast), recording which was asked for."""
    calls, real = [], export._legacy

    def legacy(*args):
        calls.append("legacy")
        if legacy_fails:
            raise RuntimeError("torch.onnx.export(dynamo=False) was removed")
        return real(*args)

    def dynamo(*args):
        calls.append("dynamo")
        return real(*args)

    monkeypatch.setattr(export, "_legacy", legacy)
    monkeypatch.setattr(export, "_dynamo", dynamo)
    return calls


def test_auto_uses_dynamo_when_the_legacy_exporter_is_gone(digits_run, monkeypatch):
    calls = _stub_exporters(monkeypatch)
    monkeypatch.setattr(export, "legacy_exporter_available", lambda: False)
    result = export.export_onnx(_clean(digits_run), say=lambda msg: None)
    assert calls == ["dynamo"] and result.exporter == "dynamo"
    assert "dynamo=True" in json.loads((digits_run / "model.onnx.json").read_text())["exporter"]


def test_auto_falls_back_to_dynamo_when_legacy_fails(digits_run, monkeypatch):
    calls = _stub_exporters(monkeypatch, legacy_fails=True)
    result = export.export_onnx(_clean(digits_run), say=lambda msg: None)
    assert calls == ["legacy", "dynamo"] and result.exporter == "dynamo"
    assert result.parity.agreement == 1.0


def test_auto_prefers_legacy_while_it_ships(digits_run, monkeypatch):
    calls = _stub_exporters(monkeypatch)
    assert export.export_onnx(_clean(digits_run), say=lambda msg: None).exporter == "legacy"
    assert calls == ["legacy"]


def test_forced_legacy_does_not_fall_back(digits_run, monkeypatch):
    calls = _stub_exporters(monkeypatch, legacy_fails=True)
    monkeypatch.setenv(export.EXPORTER_ENV, "legacy")
    with pytest.raises(DanluError, match="legacy: RuntimeError: torch.onnx.export.dynamo=False. was removed"):
        export.export_onnx(_clean(digits_run), say=lambda msg: None)
    assert calls == ["legacy"]


def test_an_unknown_exporter_is_refused(digits_run, monkeypatch, capsys):
    monkeypatch.setenv(export.EXPORTER_ENV, "tracing")
    assert main(["export", str(digits_run)]) == 2
    assert "DANLU_ONNX_EXPORTER='tracing'" in capsys.readouterr().err


@pytest.mark.slow
def test_dynamo_export_of_digits_passes_parity_and_serves(digits_run, monkeypatch, capsys):
    from danlu.serve.engine import Engine

    monkeypatch.setenv(export.EXPORTER_ENV, "dynamo")
    assert main(["export", str(_clean(digits_run)), "--json"]) == 0
    result = last_json(capsys.readouterr().out)  # stdout holds only the JSON: dynamo's chatter is kept off it
    assert result["exporter"] == "dynamo" and result["parity"]["agreement"] == 1.0
    assert result["parity"]["max_abs_diff"] < 1e-5
    graph = onnx.load(str(digits_run / "model.onnx"))
    assert graph.opset_import[0].version == export.DYNAMO_OPSET
    engine = Engine.load(digits_run, backend="onnx")  # current: used as it is, not exported again
    predictor = Predictor.load(digits_run)
    x = torch.rand(7, 1, 8, 8)
    assert torch.allclose(engine.forward(x), predictor.forward(x), atol=1e-5)


@pytest.mark.slow
def test_dynamo_export_of_a_text_model_takes_any_length(tmp_path, monkeypatch):
    """Text graphs need a dynamic sequence axis: parity on batches of 1-3 texts of 1 to max_len tokens."""
    from danlu.api import train

    rng = np.random.default_rng(0)
    words = ["the", "movie", "was", "really", "quite", "and", "plot", "acting", "story", "so"]
    rows = []
    for i in range(120):
        text = list(rng.choice(words, rng.integers(1, 12)))
        text.insert(int(rng.integers(0, len(text) + 1)), ["awful", "great"][i % 2])
        rows.append(f"{i % 2}\t{' '.join(text)}\n")
    data = tmp_path / "texts.tsv"
    data.write_text("label\ttext\n" + "".join(rows), encoding="utf-8")
    monkeypatch.setenv("DANLU_CACHE", str(tmp_path / "cache"))
    run = train("sst2-lstm", ["data.name=text", f"data.path={data}", "model.embed_dim=16", "model.hidden=16",
                              "train.epochs=1", "data.max_len=16"], runs_dir=tmp_path / "runs", progress=False).run
    monkeypatch.setenv(export.EXPORTER_ENV, "dynamo")
    result = export.export_onnx(run, say=lambda msg: None)
    assert result.exporter == "dynamo" and result.parity.agreement == 1.0
    predictor = Predictor.load(run)
    session = ort.InferenceSession(str(run / "model.onnx"), providers=["CPUExecutionProvider"])
    vocab = predictor.schema.text["vocab_size"]
    for batch in (1, 3):
        for length in (1, 2, 5, 11, 16):
            ids = torch.from_numpy(rng.integers(2, vocab, (batch, length)))
            ids[0, max(1, length // 2):] = 0  # a padded row beside full ones
            got = session.run(None, {"input": ids.numpy()})[0]
            want = predictor.forward(ids).numpy()
            assert got.shape == want.shape and np.abs(got - want).max() < 1e-5, (batch, length)
