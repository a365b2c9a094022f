"""danlu export: ONNX graph + preprocessing metadata, checked against PyTorch on the test split."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import danlu.export as export
from danlu.cli.dispatch import main
from danlu.errors import DanluError
from danlu.predictor import Predictor


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One image run and one tabular run, exported once, shared by the module."""
    from danlu.api import train

    root = tmp_path_factory.mktemp("export-runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DANLU_CACHE", str(tmp_path_factory.mktemp("cache")))
        image = train("digits-mlp", ["train.epochs=1"], runs_dir=root, progress=False).run
        tabular = train("breast-cancer-mlp", ["train.epochs=1"], runs_dir=root, progress=False).run
    return SimpleNamespace(image=image, tabular=tabular)


def fresh_copy(run, tmp_path):
    out = shutil.copytree(run, tmp_path / run.name)
    for name in ("model.onnx", "model.onnx.json"):
        (out / name).unlink(missing_ok=True)
    return out


def test_cli_export_writes_model_metadata_and_reports_parity(runs, capsys):
    assert main(["export", str(runs.image), "--format", "onnx"]) == 0
    out = capsys.readouterr().out
    assert "max abs difference" in out and "argmax agreement 100.0000%" in out and "model.onnx" in out
    meta = json.loads((runs.image / "model.onnx.json").read_text())
    schema = json.loads((runs.image / "schema.json").read_text())
    assert meta["kind"] == "image" and meta["task"] == "classification"
    assert meta["schema"]["input_shape"] == [1, 8, 8] and meta["schema"]["classes"] == schema["classes"]
    assert meta["schema"]["mean"] == schema["mean"] and meta["schema"]["std"] == schema["std"]
    assert meta["parity"]["samples"] == json.loads((runs.image / "report.json").read_text())["samples"]
    assert meta["parity"]["agreement"] >= 0.999 and meta["parity"]["max_abs_diff"] < 1e-4
    assert meta["input"]["shape"] == ["batch", 1, 8, 8] and "x / 255" in meta["preprocess"]
    graph = onnx.load(str(runs.image / "model.onnx")).graph
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert export.onnx_is_current(runs.image)
    assert not list(runs.image.glob(".model.onnx*.tmp"))  # atomic writes leave no temp files


@pytest.mark.parametrize("batch", [1, 7])
def test_onnx_outputs_equal_predictor_forward_for_any_batch_size(runs, batch):
    if not export.onnx_is_current(runs.image):
        export.export_onnx(runs.image, say=lambda msg: None)
    predictor = Predictor.load(runs.image)
    x = torch.randn(batch, *predictor.schema.input_shape)
    session = ort.InferenceSession(str(runs.image / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x.numpy()})[0]
    assert got.shape == (batch, 10)
    np.testing.assert_allclose(got, predictor.forward(x).numpy(), atol=1e-5)


def test_tabular_export_carries_the_feature_contract(runs, capsys):
    assert main(["export", str(runs.tabular), "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out.strip().splitlines()[-1])
    assert "max abs difference" in captured.err and result["parity"]["agreement"] >= 0.999
    meta = json.loads((runs.tabular / "model.onnx.json").read_text())
    assert meta["kind"] == "tabular" and len(meta["schema"]["features"]) == 30
    assert meta["input"]["shape"] == ["batch", 30] and meta["output"]["name"] == "probabilities"


def test_parity_failure_exits_2_and_writes_nothing(runs, tmp_path, monkeypatch, capsys):
    run = fresh_copy(runs.image, tmp_path)
    monkeypatch.setattr(export, "check_parity",
                        lambda predictor, data, batches: export.Parity(100, 0.4, 0.95, "argmax"))
    assert main(["export", str(run)]) == 2
    err = capsys.readouterr().err
    assert "disagrees with PyTorch on 5.00% of the test split" in err and "--backend torch" in err
    assert not (run / "model.onnx").exists() and not (run / "model.onnx.json").exists()


def test_a_model_the_exporter_cannot_take_is_a_clear_error(runs, tmp_path, monkeypatch):
    run = fresh_copy(runs.image, tmp_path)

    def refuse(*args, **kwargs):
        raise RuntimeError("Exporting the operator 'aten::weird' to ONNX opset version 17 is not supported")

    monkeypatch.setattr(torch.onnx, "export", refuse)
    with pytest.raises(DanluError, match="could not export the image model 'mlp' to ONNX") as info:
        export.export_onnx(run, say=lambda msg: None)
    assert "aten::weird" in str(info.value) and "--backend torch" in info.value.hint
    assert not (run / "model.onnx").exists()


def test_stale_export_is_noticed(runs, tmp_path):
    run = fresh_copy(runs.image, tmp_path)
    assert not export.onnx_is_current(run)
    export.export_onnx(run, say=lambda msg: None)
    assert export.onnx_is_current(run)
    weights = run / "model.safetensors"
    weights.write_bytes(weights.read_bytes() + b" ")  # any change to the weights file
    assert not export.onnx_is_current(run)


def test_unknown_format_is_refused(runs):
    with pytest.raises(SystemExit) as info:
        main(["export", str(runs.image), "--format", "tflite"])
    assert info.value.code == 2


@pytest.mark.parametrize("model", ["textcnn", "lstm"])
def test_text_exports_read_every_token_not_just_the_example_s(tmp_path, monkeypatch, model):
    # Tracing once baked the example batch's trimmed length into the graph: tokens past it were ignored.
    from danlu.api import train

    rng = np.random.default_rng(0)
    filler = ["the", "movie", "was", "really", "quite", "and", "plot", "acting", "story", "so"]
    rows = []
    for i in range(300):
        words = list(rng.choice(filler, rng.integers(1, 30)))
        words.insert(int(rng.integers(0, len(words) + 1)), ["awful", "great"][i % 2])
        rows.append(f"{i % 2}\t{' '.join(words)}\n")
    data = tmp_path / "short.tsv"
    data.write_text("label\ttext\n" + "".join(rows), encoding="utf-8")
    monkeypatch.setenv("DANLU_CACHE", str(tmp_path / "cache"))
    run = train("sst2-lstm", ["data.name=text", f"data.path={data}", f"model={{name: {model}}}", "train.epochs=2"],
                runs_dir=tmp_path / "runs", progress=False).run
    result = export.export_onnx(run, say=lambda msg: None)
    assert result.parity.max_abs_diff < 1e-4 and result.parity.agreement == 1.0
