"""Tracking outlets: TensorBoard event files read back record by record, and a real MLflow server (SQLite
backend store, started here on 127.0.0.1) read back through its REST API.

The MLflow server is full mlflow, which lives in its own virtual environment (``make mlflow-server`` builds
.venv-mlflow; .ci/run calls it) so its pins never meet danlu's; DANLU_MLFLOW=path/to/mlflow overrides.
Under CI=true the server test must run.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from danlu.api import train
from danlu.errors import DanluError, RecipeError
from danlu.recipe import load_recipe
from danlu.runs.files import read_json
from danlu.runs.store import metrics_history

REPO = Path(__file__).resolve().parents[1]


def read_events(folder: Path) -> list:
    """Every Event in a folder's event files (TFRecord: length, crc, payload, crc)."""
    from tensorboardX.proto import event_pb2

    events = []
    for f in sorted(folder.glob("events.out.tfevents.*")):
        data, i = f.read_bytes(), 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i:i + 8])
            ev = event_pb2.Event()
            ev.ParseFromString(data[i + 12:i + 12 + n])
            events.append(ev)
            i += 12 + n + 4
    return events


def scalars(events: list) -> dict[str, dict[int, float]]:
    out: dict[str, dict[int, float]] = {}
    for ev in events:
        for v in ev.summary.value:
            if v.HasField("simple_value"):
                out.setdefault(v.tag, {})[ev.step] = v.simple_value
    return out


def test_tensorboard_event_files_hold_epochs_steps_hparams_and_figures(tmp_path):
    result = train("digits-mlp", ["train.epochs=2", "train.track=[tensorboard]", "train.track_every_steps=3"],
                   runs_dir=tmp_path, progress=False)
    events = read_events(result.run / "tb")
    got = scalars(events)
    history = metrics_history(result.run)
    for row in history:  # each epoch's row, as metrics.jsonl has it (float32 in the event file)
        for k in ("train_loss", "val_accuracy", "val_loss", "lr"):
            assert got[f"epoch/{k}"][row["epoch"]] == pytest.approx(row[k], rel=1e-6, abs=1e-7)
    steps = sorted(got["step/train_loss"])
    assert steps and all(s % 3 == 0 for s in steps)
    report = read_json(result.run / "report.json")
    assert got["test/accuracy"][0] == pytest.approx(report["metrics"]["accuracy"], rel=1e-6)
    plugins = {v.metadata.plugin_data.plugin_name for ev in events for v in ev.summary.value}
    assert "hparams" in plugins
    hparams = [v.metadata.plugin_data.content for ev in events for v in ev.summary.value
               if v.metadata.plugin_data.plugin_name == "hparams"]
    assert any(b"train.lr" in c for c in hparams)
    images = {v.tag for ev in events for v in ev.summary.value if v.HasField("image")}
    assert {"figures/learning_curves", "figures/confusion_test"} <= images


def test_unknown_outlet_is_refused_with_the_choices():
    with pytest.raises(RecipeError, match="tensorboard"):
        load_recipe("digits-mlp", ["train.track=[tensorbord]"])
    assert load_recipe("digits-mlp").train.track == []  # off by default


def test_mlflow_without_a_tracking_uri_is_a_clear_error(tmp_path, monkeypatch, cli):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    code, out, err = cli("train", "digits-mlp", "train.epochs=1", "--track", "mlflow", "--quiet")
    assert code == 2 and "MLFLOW_TRACKING_URI" in err
    statuses = [read_json(p / "status.json")["status"] for p in (tmp_path / "runs").iterdir()]
    assert statuses == ["failed"]  # the folder says what happened, it is not left "training"


def test_tracking_libraries_stay_off_the_default_path():
    code = ("import sys, danlu.api, danlu.training.loop, danlu.cli.dispatch; "
            "danlu.api.train('digits-mlp', ['train.epochs=1'], runs_dir=sys.argv[1], progress=False); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorboardX', 'mlflow', 'tensorboard')))")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code, str(Path(os.environ["DANLU_CACHE"]) / "runs")], env=env,
                         capture_output=True, text=True, timeout=300, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


# ---------------------------------------------------------------- MLflow against a real server

def mlflow_binary() -> str | None:
    for candidate in (os.environ.get("DANLU_MLFLOW"), str(REPO / ".venv-mlflow" / "bin" / "mlflow")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    binary = mlflow_binary()
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI needs the MLflow server: make mlflow-server")
        pytest.skip("no MLflow server here (make mlflow-server builds .venv-mlflow)")
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    log = (root / "server.log").open("wb")
    proc = subprocess.Popen([binary, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                             "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
                             "--artifacts-destination", str(root / "artifacts")],
                            cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("the MLflow server did not start:\n" + (root / "server.log").read_text()[-3000:])
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and its workers (own session)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()


def rest(url: str, path: str, **params: str) -> dict:
    with urllib.request.urlopen(f"{url}/api/2.0/mlflow/{path}?{urllib.parse.urlencode(params)}", timeout=30) as r:
        return json.loads(r.read())


def test_mlflow_run_is_logged_and_read_back_through_rest(tmp_path, monkeypatch, mlflow_server):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    result = train("digits-mlp", ["train.epochs=2", "train.track=[mlflow]"], runs_dir=tmp_path, progress=False)
    run_id = read_json(result.run / "mlflow.json")["run_id"]
    run = rest(mlflow_server, "runs/get", run_id=run_id)["run"]
    assert run["info"]["status"] == "FINISHED" and run["info"]["run_name"] == result.run.name
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    assert params["train.epochs"] == "2" and params["model.name"] == "mlp"
    latest = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    assert latest["test_accuracy"] == pytest.approx(result.metrics["accuracy"])
    history = rest(mlflow_server, "metrics/get-history", run_id=run_id, metric_key="val_accuracy")["metrics"]
    rows = metrics_history(result.run)
    assert [(m["step"], m["value"]) for m in sorted(history, key=lambda m: m["step"])] == \
        [(r["epoch"], pytest.approx(r["val_accuracy"])) for r in rows]
    files = {f["path"] for f in rest(mlflow_server, "artifacts/list", run_id=run_id).get("files", [])}
    assert {"report.json", "recipe.yaml", "model.safetensors", "plots"} <= files
    assert "checkpoints" not in files
    exp = rest(mlflow_server, "experiments/get", experiment_id=run["info"]["experiment_id"])["experiment"]
    assert exp["name"] == "digits-mlp"


def test_mlflow_server_down_fails_fast_and_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    t0 = time.monotonic()
    with pytest.raises(DanluError, match="did not take the run"):
        train("digits-mlp", ["train.epochs=1", "train.track=[mlflow]"], runs_dir=tmp_path, progress=False)
    assert time.monotonic() - t0 < 120

