"""Audio runs through the production verbs: int8 compression (the feature front end stays float), tune, and
POST /v1/explain's time-frequency map behind the server's request limits; the spoken-digit generator."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from tests.conftest import last_json
from tests.test_audio import RATE, tone, write

SECONDS = 0.5


def low_high_folder(root: Path, per_class: int = 12) -> Path:
    """Synthetic test data: harmonic tones near 150 Hz ('low') and near 600 Hz ('high'), a little glide each."""
    rng = np.random.default_rng(0)
    for i in range(per_class):
        for label, f in (("low", 150.0), ("high", 600.0)):
            f0 = f * (1 + 0.1 * rng.standard_normal())
            glide = np.geomspace(f0, f0 * (1 + 0.2 * rng.uniform(-1, 1)), int(RATE * SECONDS))
            write(root / label / f"{i}.wav", tone(glide, SECONDS, amp=float(rng.uniform(0.1, 0.5))))
    return root


@pytest.fixture(scope="module")
def audio_run(tmp_path_factory):
    from danlu.api import train

    root = low_high_folder(tmp_path_factory.mktemp("low-high"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DANLU_CACHE", str(tmp_path_factory.mktemp("cache")))
        result = train("audiofolder-cnn", [f"data.root={root}", f"data.seconds={SECONDS}", "train.epochs=6",
                                           "model.widths=[8,8]", "train.batch_size=8", "data.test_fraction=0.25"],
                       runs_dir=tmp_path_factory.mktemp("runs"), progress=False, plots=False)
    return SimpleNamespace(run=result.run, root=root, metrics=result.metrics)


def test_int8_keeps_the_feature_front_end_float(audio_run, tmp_path, capsys, monkeypatch):
    import onnx

    import danlu.compress.measure as measure
    from danlu.cli.dispatch import main

    monkeypatch.setattr(measure, "time_variant", lambda fn, inputs, threads: {b: 1.0 for b in inputs})  # no timing
    run = Path(shutil.copytree(audio_run.run, tmp_path / audio_run.run.name))
    code = main(["compress", str(run), "--quantize", "int8", "--max-drop", "5", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    result = last_json(out)
    assert result["agreement"] >= 0.95, result
    graph = onnx.load(str(run / "model.int8.onnx")).graph
    fp32 = onnx.load(str(run / "model.onnx")).graph

    def products(g):  # the DFT and mel-filterbank products of the spectrogram, in float
        return sorted(n.name for n in g.node if n.op_type == "MatMul" and n.name.startswith("/model/spectrogram/"))

    assert len(products(fp32)) == 3 and products(graph) == products(fp32)
    ops = {n.op_type for n in graph.node}
    assert ops & {"ConvInteger", "MatMulInteger", "QLinearConv", "DequantizeLinear"}, "the learned layers are int8"
    table = json.loads((run / "compress.json").read_text())["tables"]["int8"]
    assert [v["name"] for v in table["variants"]] == ["fp32 (PyTorch)", "fp32 (ONNX)", "int8 (ONNX)"]


def test_the_front_end_is_found_by_data_flow_and_a_graph_without_one_is_refused(audio_run, tmp_path):
    """Nodes that depend on no learned tensor are the front end, whatever their names; a graph where every
    node depends on one (no fixed features to keep) is refused rather than quantized blind."""
    import onnx
    import torch

    from danlu.compress.front_end import front_end_nodes, model_names
    from danlu.compress.quantize import audio_front_end
    from danlu.errors import DanluError
    from danlu.predictor import Predictor

    model = Predictor.load(audio_run.run).model
    graph = onnx.load(str(_exported(audio_run.run, tmp_path) / "model.onnx")).graph
    for i, node in enumerate(graph.node):  # names say nothing
        node.name = f"{node.op_type}-{i}" if node.name.startswith("/model/spectrogram/") else f"n{i}"
    front = set(front_end_nodes(graph, *model_names(model)))
    ops = {n.name: n.op_type for n in graph.node}
    assert sum(ops[n] == "MatMul" for n in front) == 3  # the two DFT products and the mel filterbank
    assert not [n for n in front if ops[n] in ("Conv", "Gemm")]  # every learned layer is left to int8

    linear = torch.nn.Linear(4, 2)
    path = tmp_path / "linear.onnx"
    torch.onnx.export(linear, (torch.randn(1, 4),), str(path), dynamo=False)
    with pytest.raises(DanluError, match="feature front end"):
        audio_front_end(linear, path.read_bytes())


def _exported(run: Path, tmp_path: Path) -> Path:
    from danlu.export import export_onnx

    copy = Path(shutil.copytree(run, tmp_path / f"exported-{run.name}"))
    export_onnx(copy, say=lambda *_: None)
    return copy


def test_tune_runs_trials_of_an_audio_recipe(audio_run, cli, tmp_path):
    code, out, err = cli("tune", "audiofolder-cnn", f"data.root={audio_run.root}", f"data.seconds={SECONDS}",
                         "train.epochs=1", "train.batch_size=8", "--trials", "2", "--json")
    assert code == 0, err
    result = last_json(out)
    assert result["trials"]["complete"] == 2
    assert set(result["best"]["params"]) >= {"train.lr", "model.widths", "model.augment.pitch_semitones"}
    assert Path(result["best"]["run"], "model.safetensors").is_file()


def test_explain_route_answers_a_time_frequency_map(audio_run):
    from fastapi.testclient import TestClient

    from danlu.serve.app import create_app

    clip = (audio_run.root / "high" / "0.wav").read_bytes()
    with TestClient(create_app(audio_run.run), base_url="http://localhost") as client:
        answer = client.post("/v1/explain", files=[("files", ("high.wav", clip, "audio/wav"))])
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["method"] == "occlusion"
        row = body["explanations"][0]
        assert row["input"] == "high.wav" and row["target"]["label"] == row["top"][0]["label"]
        heat = row["map"]
        assert heat["shape"] == [16, 16] and len(heat["values"]) == 16 and len(heat["values"][0]) == 16
        assert heat["bands_hz"][0] == 0 and heat["bands_hz"][-1] == RATE / 2 and len(heat["bands_hz"]) == 17
        assert heat["seconds"][0] == 0 and heat["seconds"][-1] == SECONDS and len(heat["seconds"]) == 17
        assert base64.b64decode(row["heatmap_png"]).startswith(b"\x89PNG\r\n\x1a\n")
        predicted = client.post("/v1/predict", files=[("files", ("high.wav", clip, "audio/wav"))]).json()
        assert predicted["predictions"][0]["top"][0]["label"] == row["top"][0]["label"]

        as_json = client.post("/v1/explain", json={"inputs": ["data:audio/wav;base64," +
                                                              base64.b64encode(clip).decode()], "target": "low"})
        assert as_json.status_code == 200 and as_json.json()["explanations"][0]["target"]["label"] == "low"
        # the cost bounds: at most two clips (257 model runs each), methods that fit sound, the gate's key
        three = client.post("/v1/explain", files=[("files", (f"{i}.wav", clip, "audio/wav")) for i in range(3)])
        assert three.status_code == 422 and "Maximum number of files is 2" in three.json()["detail"]
        as_json = client.post("/v1/explain", json={"inputs": [base64.b64encode(clip).decode()] * 3})
        assert as_json.status_code == 422 and "at most 2" in as_json.json()["error"]
        ig = client.post("/v1/explain", json={"inputs": [base64.b64encode(clip).decode()], "method": "ig"})
        assert ig.status_code == 422 and "occlusion" in ig.json()["detail"]
        junk = client.post("/v1/explain", files=[("files", ("x.wav", b"RIFF not audio", "audio/wav"))])
        assert junk.status_code == 422 and "not a readable audio file" in junk.text
    with TestClient(create_app(audio_run.run, api_key="k3y"), base_url="http://localhost") as client:
        denied = client.post("/v1/explain", files=[("files", ("high.wav", clip, "audio/wav"))])
        assert denied.status_code == 401
    from danlu.studio.app import create_studio_app

    run = Path(audio_run.run)  # the studio's try-it bounds audio explanations as /v1/explain does
    with TestClient(create_studio_app(run.parent), base_url="http://127.0.0.1") as studio:
        url = "data:audio/wav;base64," + base64.b64encode(clip).decode()
        two = studio.post(f"/api/runs/{run.name}/explain", json={"inputs": [url] * 2})
        assert two.status_code == 200, two.text
        three = studio.post(f"/api/runs/{run.name}/explain", json={"inputs": [url] * 3})
        assert three.status_code in (413, 422) and "at most 2" in three.text
        tried = studio.post(f"/api/runs/{run.name}/predict", json={"inputs": [url]})
        assert tried.status_code == 200, tried.text  # as /v1/predict answered for the same clip
        assert tried.json()["predictions"][0]["top"][0]["label"] == predicted["predictions"][0]["top"][0]["label"]
        on_disk = str(audio_run.root / "high" / "0.wav")  # a path is not read from the server's disk
        assert studio.post(f"/api/runs/{run.name}/predict", json={"inputs": [on_disk]}).status_code == 422


def test_the_spoken_digit_generator_labels_its_clips_synthetic(tmp_path):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng); .ci/run installs it")
    from benchmarks.make_spoken_digits import make
    from danlu.data.audiofolder import scan_audio_folder

    manifest = make(tmp_path / "digits", per_voice=1, digits="07", train_variants=("m1",), test_variants=("f2",))
    assert manifest["synthetic"] is True and len(manifest["clips"]) == 2 * 2 * 2  # digits x languages x splits
    classes, splits, skipped = scan_audio_folder(tmp_path / "digits")
    assert classes == ["0", "7"] and not skipped  # the manifest is a hidden file, not a stray one
    assert all(p.name.startswith("synthetic-") for items in splits.values() for p, _ in items)
    assert {p.name.split("-")[2] for p, _ in splits["test"]} == {"f2"}  # the test voice is not a training voice
