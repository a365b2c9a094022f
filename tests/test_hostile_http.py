"""Issue 28 over HTTP: serve's header check and explain route, and the studio as hardened as serve (one
request gate, decode costing and pools, connection limits, files contained in their run folder, paged
metrics); then the CLI's output paths and settings on a real run. One digits-mlp run (1 epoch) is trained
for the module; every payload is generated (tests/hostile.py)."""

from __future__ import annotations

import base64
import json
import shutil
import socket
import threading
import time
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient

from danlu.serve.app import create_app
from danlu.serve.gate import PAGE_HEADERS
from danlu.serve.limits import ConnectionLimits
from danlu.serve.server import BackgroundServer
from danlu.studio.app import create_studio_app
from tests.hostile import float_tiff, gif_screen, hostile_runs, jpeg_sof, ppm_header
from tests.test_hostile_runs import within

BOMBS = {"gif 65535²": gif_screen(), "ppm 60000²": ppm_header(), "jpeg 65500²": jpeg_sof()}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A trained image run, and a runs folder holding it beside hostile runs."""
    from danlu.api import train

    root = tmp_path_factory.mktemp("hostile-runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DANLU_CACHE", str(tmp_path_factory.mktemp("cache")))
        run = train("digits-mlp", ["train.epochs=1"], runs_dir=root, progress=False).run
    hostile = hostile_runs(root)
    return SimpleNamespace(root=root, run=run, hostile=hostile)


@pytest.fixture(scope="module")
def serve(world):
    with TestClient(create_app(world.run), base_url="http://localhost") as c:
        yield c


@pytest.fixture(scope="module")
def studio(world):
    with TestClient(create_studio_app(world.root, max_body_mb=1), base_url="http://127.0.0.1") as c:
        yield c


def refused(r, status: int, *needles: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) >= {"error", "detail"} and "internal error" not in body["error"], body
    for needle in needles:
        assert needle in body["error"], body
    return body


# ---------------------------------------------------------------- serve


@pytest.mark.parametrize("name", list(BOMBS))
def test_decoder_refusals_are_422_on_predict_and_explain(serve, name, caplog):
    data = BOMBS[name]
    assert len(data) < 1000
    refused(serve.post("/v1/predict", json={"inputs": [b64(data)]}), 422, "input 0")
    refused(serve.post("/v1/predict", files=[("files", ("x.img", data, "image/png"))]), 422, "input 0 (x.img)")
    refused(serve.post("/v1/explain", json={"inputs": [b64(data)]}), 422, "input 0")
    assert not [r for r in caplog.records if r.levelname == "ERROR"]  # no traceback in the log


def test_explain_parses_and_decodes_in_the_decode_pool(world):
    from tests.studio_runs import digit_data_url

    with TestClient(create_app(world.run, decode_threads=1), base_url="http://localhost") as c:
        engine, seen = c.app.state.engine, []
        prepare = engine.prepare

        def watched(*args, **kwargs):
            seen.append(threading.current_thread().name)
            return prepare(*args, **kwargs)

        engine.prepare = watched
        r = c.post("/v1/explain", json={"inputs": [digit_data_url(3)]})
        assert r.status_code == 200, r.text
        assert seen and all(name.startswith("danlu-decode") for name in seen), seen


def test_samples_check_the_parity_file_shapes(world, tmp_path):
    import torch
    from safetensors.torch import save_file

    run = shutil.copytree(world.run, tmp_path / world.run.name)
    with TestClient(create_app(run), base_url="http://localhost") as c:
        assert len(c.get("/v1/samples").json()["samples"]) > 0  # the real parity file gives samples
        for shape in ((4,), (1, 1, 1, 8, 8), (2, 5, 8, 8), (3, 1, 8, 9)):
            save_file({"inputs": torch.zeros(shape), "outputs": torch.zeros(1)}, str(run / "parity.safetensors"))
            r = c.get("/v1/samples")
            assert r.status_code == 200 and r.json() == {"samples": []}, (shape, r.text)


# ---------------------------------------------------------------- the studio's gate


def test_studio_and_serve_share_one_gate_and_page_headers(studio, serve):
    for client in (studio, serve):
        page = client.get("/")
        assert {k: page.headers[k] for k in PAGE_HEADERS} == PAGE_HEADERS
    assert type(studio.app.gate) is type(serve.app.gate)


def test_studio_counts_the_bytes_received_chunked_included(studio, world):
    def chunks():
        for _ in range(40):
            yield b" " * 65536  # 2.5 MB, no content-length: chunked

    r = studio.post(f"/api/runs/{world.run.name}/predict", content=chunks(),
                    headers={"content-type": "application/json"})
    refused(r, 413, "larger than 1 MiB")
    refused(studio.post(f"/api/runs/{world.run.name}/predict", content=b"{}", headers={"content-type": "text/plain"}),
            415, "application/json")
    refused(studio.get("/api/runs", headers={"host": "rebind.example"}), 421, "rebind.example")


def test_studio_key_is_checked_before_the_body(world):
    with TestClient(create_studio_app(world.root, "k3y"), base_url="http://127.0.0.1") as c:
        refused(c.get("/api/runs"), 401, "API key")
        assert c.get("/api/runs", headers={"X-API-Key": "k3y"}).status_code == 200
        assert c.get("/").status_code == 200  # the page itself asks for the key


def test_studio_runs_under_serves_connection_limits(world):
    limits = ConnectionLimits(header_timeout_s=1.0, max_connections=3)
    with BackgroundServer(create_studio_app(world.root), limits=limits) as server:
        socks = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(5)]
        time.sleep(0.3)
        refused_now = 0
        for s in socks[3:]:
            s.settimeout(2)
            refused_now += s.recv(100).startswith(b"HTTP/1.1 503")
        assert refused_now == 2
        socks[0].settimeout(5)
        t0 = time.monotonic()
        assert socks[0].recv(10) == b""  # idle: closed at the header timeout
        assert time.monotonic() - t0 < 3
        for s in socks:
            s.close()


def test_danlu_studio_serves_with_the_guarded_protocol(world, monkeypatch):
    import uvicorn

    from danlu.cli.dispatch import main
    from danlu.serve.protocol import PROTOCOL

    seen = {}

    class Server:
        def __init__(self, config):
            seen["config"] = config

        def run(self):
            seen["ran"] = True

    monkeypatch.setattr(uvicorn, "Server", Server)
    assert main(["studio", "--runs", str(world.root), "--port", "0"]) == 0
    assert seen["ran"] and seen["config"].http == PROTOCOL and seen["config"].danlu_limits == ConnectionLimits()


# ---------------------------------------------------------------- the studio's try-it


def test_studio_try_it_costs_images_from_their_headers(studio, world):
    tiff = float_tiff(5000)  # 25 megapixels of float32: ~715 MiB to decode, in a few hundred KB
    assert len(tiff) < 1_000_000
    for data in (tiff, gif_screen()):
        t0 = time.perf_counter()
        r = studio.post(f"/api/runs/{world.run.name}/predict", json={"inputs": [b64(data)]})
        refused(r, 422, "input 0")
        assert time.perf_counter() - t0 < 2
    refused(studio.post(f"/api/runs/{world.run.name}/explain", json={"inputs": [b64(tiff)]}), 422, "--max-image-mb")


# ---------------------------------------------------------------- the studio's files


def test_studio_list_marks_hostile_runs_damaged_fast_and_small(studio, world):
    with within(20):
        t0 = time.perf_counter()
        r = studio.get("/api/runs")
        took = time.perf_counter() - t0
    assert r.status_code == 200 and took < 5 and len(r.content) < 200_000, (took, len(r.content))
    rows = {row["run"]: row for row in r.json()["runs"]}
    assert rows[world.run.name]["status"] == "done" and not rows[world.run.name]["problems"]
    for what, run in world.hostile.items():
        if what != "healthy":
            assert rows[run.name]["status"] == "damaged", (what, rows[run.name])
    assert "alias" in " ".join(rows[world.hostile["alias bomb"].name]["problems"]).lower()
    with within(20):
        for run in world.hostile.values():
            r = studio.get(f"/api/runs/{run.name}")
            assert r.status_code == 200 and "root:" not in r.text, r.text[:300]


def test_studio_serves_no_file_from_outside_a_run_folder(studio, world, tmp_path):
    leak = shutil.copytree(world.run, world.root / "20260101-000100-leaky")
    (leak / "plots" / "confusion_test.png").unlink()
    (leak / "plots" / "confusion_test.png").symlink_to("/etc/passwd")
    d = studio.get(f"/api/runs/{leak.name}").json()
    assert "confusion_test" not in d["figures"] and d["figures"]
    refused(studio.get(f"/api/runs/{leak.name}/figures/confusion_test.png"), 404, "no figure")
    elsewhere = tmp_path / "plots"
    shutil.copytree(leak / "plots", elsewhere)
    shutil.rmtree(leak / "plots")
    (leak / "plots").symlink_to(elsewhere)  # a linked plots/ leaks the same way
    assert studio.get(f"/api/runs/{leak.name}").json()["figures"] == []
    refused(studio.get(f"/api/runs/{leak.name}/figures/learning_curves.png"), 404)


def test_studio_refuses_over_long_names_with_404(studio):
    for name in ("x" * 5000, "é" * 200):
        refused(studio.get(f"/api/runs/{name}"), 404, "no run")
        refused(studio.get(f"/api/runs/{name}/metrics"), 404, "no run")


def test_studio_pages_big_metrics(studio, world):
    paged = shutil.copytree(world.run, world.root / "20260101-000200-paged")
    (paged / "metrics.jsonl").write_text("".join(json.dumps({"epoch": i, "train_loss": 1 / i, "pad": "x" * 80})
                                                 + "\n" for i in range(1, 12_001)))
    assert (paged / "metrics.jsonl").stat().st_size > 1 << 20  # read a page at a time, not remembered
    d = studio.get(f"/api/runs/{paged.name}").json()
    assert len(d["history"]) == 5000
    m = studio.get(f"/api/runs/{paged.name}/metrics?after=5000").json()
    assert len(m["rows"]) == 5000 and m["rows"][0]["epoch"] == 5001 and m["more"]
    m = studio.get(f"/api/runs/{paged.name}/metrics?after=10000").json()
    assert len(m["rows"]) == 2000 and not m["more"]
    with (paged / "metrics.jsonl").open("r+b") as f:
        f.truncate(200 << 20)  # sparse 200 MB: refused from its size, not read
    t0 = time.perf_counter()
    d = studio.get(f"/api/runs/{paged.name}").json()
    assert time.perf_counter() - t0 < 2 and d["history"] == []
    assert any("larger than 32 MiB" in p for p in d["problems"])


# ---------------------------------------------------------------- the CLI on a real run


def test_bad_output_paths_exit_2(world, cli, tmp_path):
    from tests.studio_runs import digit_data_url

    png = tmp_path / "d.png"
    png.write_bytes(base64.b64decode(digit_data_url(3).split(",", 1)[1]))
    (tmp_path / "file").write_text("x")
    for args in (("runs", "compare", str(world.run), str(world.run), "--png", str(tmp_path)),
                 ("runs", "compare", str(world.run), str(world.run), "--png", "/proc/version"),
                 ("explain", str(world.run), str(png), "--out", str(tmp_path / "file")),
                 ("explain", str(world.run), str(png), "--out", "/proc/x")):
        code, out, err = cli(*args)
        assert code == 2 and "internal error" not in err, (args, err)


def test_unbounded_settings_exit_2_with_the_bound_and_leave_no_training_run(world, cli, tmp_path):
    code, out, err = cli("explain", str(world.run), "--top-losses", "1000000000")
    assert code == 2 and "between 1 and 256" in err, err
    code, out, err = cli("train", "digits-mlp", "train.threads=2000", "train.epochs=1")
    assert code == 2 and "512" in err, err
    runs = tmp_path / "runs"
    assert not runs.exists() or not any(runs.iterdir())  # refused before any run folder


def test_a_refused_prune_leaves_no_folder(world, cli, monkeypatch, tmp_path):
    import danlu.api
    from danlu.errors import DanluError

    def refuse(*args, **kwargs):
        raise DanluError("the data is gone", hint="(a refusal after the new run's folder was named)")

    monkeypatch.setattr(danlu.api, "train", refuse)
    source = shutil.copytree(world.run, tmp_path / "src" / world.run.name)
    code, out, err = cli("compress", str(source), "--prune", "0.5")
    assert code == 2 and "the data is gone" in err, err
    assert sorted(p.name for p in source.parent.iterdir()) == [world.run.name]


def test_explain_refuses_over_long_labels_without_echoing_them(serve):
    from tests.studio_runs import digit_data_url

    t0 = time.perf_counter()
    r = serve.post("/v1/explain", json={"inputs": [digit_data_url(3)], "target": "a" * 2_000_000})
    refused(r, 422, "at most 1000 characters")
    assert time.perf_counter() - t0 < 2 and len(r.content) < 1000
    r = serve.post("/v1/explain", json={"inputs": [digit_data_url(3)], "target": "b" * 900})
    body = refused(r, 422, "unknown target label")
    assert len(body["error"]) < 200  # the label is shown cut, and not fuzzy-matched


def test_runs_compare_refuses_a_metrics_file_over_its_bound(world, cli, tmp_path):
    big = shutil.copytree(world.run, tmp_path / "big")
    with (big / "metrics.jsonl").open("r+b") as f:
        f.truncate(200 << 20)  # sparse
    t0 = time.perf_counter()
    code, out, err = cli("runs", "compare", str(world.run), str(big), "--png", str(tmp_path / "c.png"))
    assert code == 2 and "larger than 32 MiB" in err, err
    assert time.perf_counter() - t0 < 20
