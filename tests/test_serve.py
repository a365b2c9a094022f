"""danlu serve: the HTTP API (TestClient), the micro-batcher, and a real uvicorn for concurrency and shutdown."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from danlu.cli.dispatch import main
from danlu.errors import DanluError, RunError
from danlu.schema import Schema
from danlu.serve.app import create_app
from danlu.serve.batching import BatcherClosed, MicroBatcher
from danlu.serve.engine import Engine
from danlu.serve.server import BackgroundServer


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One image run (8x8 digits) and one tabular run (30 features), shared by the module."""
    from danlu.api import train

    root = tmp_path_factory.mktemp("serve-runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DANLU_CACHE", str(tmp_path_factory.mktemp("cache")))
        image = train("digits-mlp", ["train.epochs=1"], runs_dir=root, progress=False).run
        tabular = train("breast-cancer-mlp", ["train.epochs=1"], runs_dir=root, progress=False).run
    return SimpleNamespace(image=image, tabular=tabular, root=root)


@pytest.fixture(scope="module")
def digit_png() -> bytes:
    from sklearn.datasets import load_digits

    img = (load_digits().images[0] * 15.9).astype(np.uint8)  # 0..16 → 0..255
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def client(runs):
    with local(create_app(runs.image, max_inputs=8, max_body_mb=1)) as c:
        yield c


@pytest.fixture(scope="module")
def tabular(runs):
    with local(create_app(runs.tabular)) as c:
        yield c


def local(app) -> TestClient:
    """A TestClient that says Host: localhost, as a client on this machine does (its default, "testserver",
    is a foreign host to the server's allow-list)."""
    return TestClient(app, base_url="http://localhost")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


JSON = {"content-type": "application/json"}


def assert_error(r: httpx.Response, status: int, needle: str) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error", "detail"} and needle in body["error"], body
    return body


# ---------------------------------------------------------------- predictions


def test_json_multipart_and_cli_give_the_same_predictions(client, runs, digit_png, tmp_path, capsys):
    png = tmp_path / "digit.png"
    png.write_bytes(digit_png)
    assert main(["predict", str(runs.image), str(png), "--json", "--top-k", "3"]) == 0
    expected = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["predictions"][0]["top"]

    r = client.post("/v1/predict", json={"inputs": [b64(digit_png), "data:image/png;base64," + b64(digit_png)]})
    assert r.status_code == 200
    rows = r.json()["predictions"]
    assert [row["input"] for row in rows] == ["input 0", "input 1"]
    assert rows[0]["top"] == rows[1]["top"]  # one batch
    same_top(rows[0]["top"], expected)  # batch of 2 vs 1: the GEMM may round differently

    r = client.post("/v1/predict", files=[("files", ("a.png", digit_png, "image/png")),
                                          ("files", ("b.png", digit_png, "image/png"))], data={"top_k": "2"})
    assert r.status_code == 200
    rows = r.json()["predictions"]
    assert [row["input"] for row in rows] == ["a.png", "b.png"]
    same_top(rows[0]["top"], expected[:2])


def same_top(got: list[dict], want: list[dict]) -> None:
    assert [t["label"] for t in got] == [t["label"] for t in want]
    assert [t["probability"] for t in got] == pytest.approx([t["probability"] for t in want], abs=2e-6)


def test_top_k_and_probabilities(client, digit_png):
    top = client.post("/v1/predict", json={"inputs": [b64(digit_png)], "top_k": 10}).json()["predictions"][0]["top"]
    assert len(top) == 10 and abs(sum(t["probability"] for t in top) - 1) < 1e-4
    assert [t["probability"] for t in top] == sorted((t["probability"] for t in top), reverse=True)


def test_tabular_rows_as_lists_and_objects(tabular):
    card = tabular.get("/v1/model").json()
    features, defaults = card["input"]["features"], card["input"]["defaults"]
    row = [defaults[f] for f in features]
    r = tabular.post("/v1/predict", json={"inputs": [row, dict(zip(features, row, strict=True)),
                                                     {f: None for f in features}], "top_k": 1})
    assert r.status_code == 200
    rows = r.json()["predictions"]
    assert rows[0]["top"] == rows[1]["top"] and rows[0]["input"] == row
    assert {t["label"] for t in rows[2]["top"]} <= set(card["classes"])


# ---------------------------------------------------------------- bad input: always a JSON 422, never a 500


@pytest.mark.parametrize("body, needle", [
    (b'{"inputs": ["aGVsbG8gd29ybGQ="]}', "not a readable image"),
    (b'{"inputs": ["%%%"]}', "not valid base64"),
    (b'{"inputs": [12]}', "base64 string or a data URL"),
    (b'{"inputs": ["data:image/png,abc"]}', "not base64-encoded"),
    (b'{"input": ["x"]}', "unknown field(s) 'input'"),
    (b'{"top_k": 3}', 'missing field "inputs"'),
    (b'{"inputs": "x"}', '"inputs" must be a list'),
    (b'{"inputs": []}', "no inputs"),
    (b'{"inputs": [' + b",".join([b'"x"'] * 9) + b"]}", "9 inputs in one request; at most 8"),
    (b'{"inputs": ["x"], "top_k": 0}', '"top_k" must be a positive integer'),
    (b'{"inputs": [NaN]}', "NaN"),
    (b"not json", "not valid JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b"\xff\xfe", "not valid JSON"),
])
def test_bad_json_is_a_422_that_says_what(client, body, needle):
    assert_error(client.post("/v1/predict", content=body, headers={"content-type": "application/json"}), 422, needle)


def test_json_nested_past_the_parser_s_depth_is_a_422(client):
    deep = "[" * 100_000 + "]" * 100_000
    assert_error(client.post("/v1/predict", content=f'{{"inputs": {deep}}}', headers=JSON), 422, "nested too deeply")


def test_bad_uploads_are_422(client, tabular, digit_png):
    assert_error(client.post("/v1/predict", files={"file": ("a.png", digit_png, "image/png")}), 422,
                 "unexpected form field 'file'")
    assert_error(client.post("/v1/predict", files={"files": ("a.txt", b"hello", "text/plain")}), 422,
                 "input 0 (a.txt): not a readable image")
    assert_error(client.post("/v1/predict", data={"files": "hello"}, files={"top_k": (None, "2")}), 422,
                 "the field 'files' holds text, not a file")
    truncated = digit_png[: len(digit_png) // 2]
    assert_error(client.post("/v1/predict", files={"files": ("t.png", truncated, "image/png")}), 422, "input 0")
    assert_error(tabular.post("/v1/predict", files={"files": ("a.png", digit_png, "image/png")}), 422,
                 "file uploads are for image and audio models")


def test_oversized_image_dimensions_are_refused_before_decoding(client):
    buf = io.BytesIO()
    Image.new("L", (8000, 6000)).save(buf, format="PNG")  # tiny file, 48 megapixels
    assert_error(client.post("/v1/predict", json={"inputs": [b64(buf.getvalue())]}), 422, "8000x6000")


def test_bad_feature_rows_are_422(tabular):
    features = tabular.get("/v1/model").json()["input"]["features"]
    row = [1.0] * len(features)
    cases = [
        ([row[:-1]], f"{len(features) - 1} values, the model expects {len(features)}"),
        ([dict(zip(features, row, strict=True)) | {"colour": 1}], "unknown column(s) 'colour'"),
        ([{features[0]: 1.0}], "missing column(s)"),
        ([["abc", *row[1:]]], "'abc' is not a number"),
        ([[True, *row[1:]]], "expected a number"),
        ([[[1.0], *row[1:]]], "expected a number"),
        ([[1e300, *row[1:]]], "too large"),
        (["just text"], "a feature row must be a list"),
    ]
    for inputs, needle in cases:
        body = assert_error(tabular.post("/v1/predict", json={"inputs": inputs}), 422, needle)
        assert body["detail"] is not None
    overflow = json.dumps({"inputs": [row]}).replace("1.0", "1e999", 1)  # parses to inf
    assert_error(tabular.post("/v1/predict", content=overflow, headers=JSON), 422, "not a finite number")
    assert_error(tabular.post("/v1/predict", content=json.dumps({"inputs": [row]}).replace("1.0", "Infinity", 1),
                              headers=JSON), 422, "Infinity")


def test_body_limit_on_declared_and_streamed_bodies(client):
    big = b"x" * (1024 * 1024 + 1)
    assert_error(client.post("/v1/predict", content=big, headers={"content-type": "application/json"}), 413,
                 "larger than 1 MiB")

    def chunks():  # no Content-Length: the limit must hold on the raw stream
        for _ in range(20):
            yield b"y" * 65536

    assert_error(client.post("/v1/predict", content=chunks(), headers=JSON), 413, "larger than 1 MiB")
    assert_error(client.post("/v1/predict", files={"files": ("big.png", big, "image/png")}), 413, "larger than")
    assert client.get("/healthz").status_code == 200


# ---------------------------------------------------------------- the other routes


def test_model_card_health_docs_and_page(client, runs):
    card = client.get("/v1/model").json()
    report = json.loads((runs.image / "report.json").read_text())
    assert card["task"] == "classification" and card["kind"] == "image" and card["recipe"] == "digits-mlp"
    assert card["classes"] == [str(i) for i in range(10)] and card["input"]["shape"] == [1, 8, 8]
    assert card["metrics"] == report["metrics"] and card["api_key_required"] is False
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.head("/healthz").status_code == 200 and client.head("/").status_code == 200  # curl -I checks
    spec = client.get("/openapi.json").json()
    content = spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data"} <= set(content)
    assert client.get("/docs").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
    assert 'id="file"' in page.text and client.get("/static/app.js").status_code == 200
    assert_error(client.get("/nope"), 404, "/nope")


def test_metrics_are_prometheus_text(client, digit_png):
    client.post("/v1/predict", json={"inputs": [b64(digit_png)]})
    client.post("/v1/predict", json={"inputs": []})
    text = client.get("/metrics").text
    assert re.search(r'^danlu_requests_total\{route="/v1/predict",method="POST",status="200"\} \d+$', text, re.M)
    assert re.search(r'^danlu_errors_total\{route="/v1/predict",kind="bad_input"\} \d+$', text, re.M)
    assert re.search(r'^danlu_request_duration_seconds_bucket\{route="/v1/predict",le="\+Inf"\} \d+$', text, re.M)
    assert "# TYPE danlu_batch_size histogram" in text and re.search(r"^danlu_batch_size_count \d+$", text, re.M)
    for line in text.splitlines():  # every sample line is NAME{labels} NUMBER
        assert line.startswith("#") or re.fullmatch(r'[a-z_]+(\{[^}]*\})? [0-9.e+-]+', line), line


def test_api_key_guards_v1_routes(runs, digit_png):
    with local(create_app(runs.image, api_key="s3cret")) as c:
        body = {"inputs": [b64(digit_png)]}
        r = c.post("/v1/predict", json=body)
        assert_error(r, 401, "missing or wrong API key")
        assert r.headers["www-authenticate"] == "Bearer"
        assert_error(c.post("/v1/predict", json=body, headers={"X-API-Key": "nope"}), 401, "wrong API key")
        assert_error(c.get("/v1/model"), 401, "API key")
        assert c.post("/v1/predict", json=body, headers={"X-API-Key": "s3cret"}).status_code == 200
        assert c.post("/v1/predict", json=body, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/v1/model", headers={"X-API-Key": "s3cret"}).json()["api_key_required"] is True
        assert c.get("/healthz").status_code == 200 and c.get("/").status_code == 200


def test_onnx_backend_exports_when_missing_and_agrees_with_torch(runs, client, digit_png, tmp_path):
    run = shutil.copytree(runs.image, tmp_path / runs.image.name)
    assert not (run / "model.onnx").exists()
    with local(create_app(run, backend="onnx")) as c:
        assert (run / "model.onnx").exists() and c.get("/v1/model").json()["backend"] == "onnx"
        body = {"inputs": [b64(digit_png)], "top_k": 10}
        got = c.post("/v1/predict", json=body).json()["predictions"][0]["top"]
    want = client.post("/v1/predict", json=body).json()["predictions"][0]["top"]
    assert [t["label"] for t in got] == [t["label"] for t in want]
    assert np.allclose([t["probability"] for t in got], [t["probability"] for t in want], atol=1e-5)


# ---------------------------------------------------------------- the micro-batcher and the engine


def test_batcher_merges_concurrent_jobs_and_isolates_failures():
    calls: list[list[int]] = []

    def run_batch(items: list[int]) -> list[int]:
        calls.append(list(items))
        if -1 in items:
            raise ValueError("boom")
        time.sleep(0.01)
        return [i * 10 for i in items]

    async def scenario(max_batch_size: int) -> list:
        b = MicroBatcher(run_batch, max_batch_size=max_batch_size, max_wait_ms=20)
        await b.start()
        results = await asyncio.gather(*(b.submit(i, 1) for i in range(10)), return_exceptions=True)
        failed = await asyncio.gather(b.submit(-1, 1), return_exceptions=True)
        pending = [asyncio.ensure_future(b.submit(i, 1)) for i in range(3)]
        await asyncio.sleep(0)
        await b.close()  # drains what is queued
        with pytest.raises(BatcherClosed):
            await b.submit(1, 1)
        return [results, failed, [p.result() for p in pending]]

    results, failed, drained = asyncio.run(scenario(4))
    assert results == [i * 10 for i in range(10)] and drained == [0, 10, 20]
    assert isinstance(failed[0], ValueError)
    assert all(len(c) <= 4 for c in calls) and len(calls) <= 3 + 1 + 1 + 2
    calls.clear()
    results, _, _ = asyncio.run(scenario(1))
    assert results == [i * 10 for i in range(10)] and all(len(c) == 1 for c in calls)


def test_jobs_queued_behind_a_running_batch_leave_together_without_waiting():
    calls: list[list[int]] = []

    def run_batch(items: list[int]) -> list[int]:
        calls.append(list(items))
        time.sleep(0.2)
        return items

    async def scenario() -> float:
        b = MicroBatcher(run_batch, max_batch_size=64, max_wait_ms=5000)  # a wait that would show
        await b.start()
        first = asyncio.ensure_future(b.submit(0, 1))
        await asyncio.sleep(0.05)  # the model is busy with job 0 now
        b.recent_jobs = 5.0  # busy traffic: a lone job would wait for company
        t0 = time.perf_counter()
        await asyncio.gather(first, *(b.submit(i, 1) for i in range(1, 6)))
        took = time.perf_counter() - t0
        await b.close()
        return took

    took = asyncio.run(scenario())
    assert calls == [[0], [1, 2, 3, 4, 5]]  # the backlog forms the next batch, no max-wait on top
    assert took < 1.0


def test_text_batches_are_right_padded_per_request():
    schema = Schema("text", "classification", [16], classes=["neg", "pos"], text={"pad_id": 0})
    engine = Engine(SimpleNamespace(schema=schema, model=torch.nn.Identity()))
    x = engine.collate([torch.tensor([[5, 6, 7]]), torch.tensor([[8, 9], [4, 0]])])
    assert x.tolist() == [[5, 6, 7], [8, 9, 0], [4, 0, 0]]


# ---------------------------------------------------------------- a real server: concurrency and shutdown


def slow_batches(app, seconds: float) -> None:
    """Make each forward pass take a while, so concurrent requests must queue behind it."""
    batcher = app.state.batcher
    real = batcher.run_batch

    def slow(items):
        time.sleep(seconds)
        return real(items)

    batcher.run_batch = slow


def batch_counts(url: str) -> tuple[float, float]:
    text = httpx.get(url + "/metrics").text
    total = float(re.search(r"^danlu_batch_size_sum (\S+)$", text, re.M).group(1))
    count = float(re.search(r"^danlu_batch_size_count (\S+)$", text, re.M).group(1))
    return total, count


@pytest.mark.parametrize("max_batch_size", [64, 1])
def test_concurrent_requests_share_forward_passes(runs, digit_png, max_batch_size):
    app = create_app(runs.image, max_batch_size=max_batch_size, max_wait_ms=20)
    slow_batches(app, 0.15)
    body = {"inputs": [b64(digit_png)]}
    with BackgroundServer(app) as server:
        assert server.host == "127.0.0.1"
        before = batch_counts(server.url)
        with httpx.Client(base_url=server.url, timeout=30) as http, ThreadPoolExecutor(16) as pool:
            responses = list(pool.map(lambda _: http.post("/v1/predict", json=body), range(16)))
        after = batch_counts(server.url)
    assert [r.status_code for r in responses] == [200] * 16
    for r in responses[1:]:  # batches of different sizes may round the last digit differently
        same_top(r.json()["predictions"][0]["top"], responses[0].json()["predictions"][0]["top"])
    inputs, passes = after[0] - before[0], after[1] - before[1]
    assert inputs == 16
    if max_batch_size == 1:
        assert passes == 16
    else:
        assert passes < 16 / 2, f"16 concurrent requests took {passes} forward passes"


def test_graceful_shutdown_finishes_in_flight_requests(runs, digit_png):
    app = create_app(runs.image)
    slow_batches(app, 0.5)
    server = BackgroundServer(app).start()
    result: dict = {}

    def request() -> None:
        result["response"] = httpx.post(server.url + "/v1/predict", json={"inputs": [b64(digit_png)]}, timeout=30)

    t = threading.Thread(target=request)
    t.start()
    deadline = time.monotonic() + 10
    while app.state.metrics.in_flight == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    server.stop()  # what SIGTERM does: stop accepting, finish in-flight requests, drain the queue
    t.join(10)
    assert result["response"].status_code == 200 and result["response"].json()["predictions"]
    assert not server.thread.is_alive()
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url + "/healthz", timeout=2)


# ---------------------------------------------------------------- the CLI verb


def test_serve_cli_binds_loopback_and_reads_the_key_from_the_environment(runs, monkeypatch, capsys):
    import danlu.serve.server as server_module

    seen: dict = {}
    def fake_run_server(settings, host, port, workers, log_level, announce, limits):
        seen.update(settings=settings, host=host, port=port, workers=workers, limits=limits)
        announce()

    monkeypatch.setattr(server_module, "run_server", fake_run_server)
    monkeypatch.setenv("DANLU_API_KEY", "from-env")
    assert main(["serve", str(runs.image), "--port", "8123", "--max-batch-size", "1"]) == 0
    assert seen["host"] == "127.0.0.1" and seen["port"] == 8123 and seen["workers"] == 1
    assert seen["settings"]["api_key"] == "from-env" and seen["settings"]["max_batch_size"] == 1
    assert "API key required" in capsys.readouterr().err
    assert main(["serve", str(runs.image), "--port", "70000"]) == 2
    assert main(["serve", str(runs.image), "--max-batch-size", "0"]) == 2
    assert main(["serve", str(runs.root / "no-such-run")]) == 2
    with socket.socket() as taken:  # a port in use is named before the model loads
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert main(["serve", str(runs.image), "--port", str(taken.getsockname()[1])]) == 2
    assert "cannot listen on 127.0.0.1" in capsys.readouterr().err


# ---------------------------------------------------------------- text runs: same API, strings in


def test_text_run_serves_on_both_backends_with_a_dynamic_sequence_axis(tmp_path, monkeypatch):
    import onnx

    from danlu.api import train

    pos = ["这家酒店很好", "服务很好，房间干净", "非常满意，推荐", "位置好，早餐好吃"]
    neg = ["房间太差了", "服务很差，不推荐", "非常失望，脏", "早餐难吃，太吵"]

    def tsv(name: str, rows: list[tuple[str, str]]):
        path = tmp_path / name
        path.write_text("label\ttext\n" + "".join(f"{label}\t{t}\n" for label, t in rows), encoding="utf-8")
        return path

    train_file = tsv("train.tsv", [("pos", t) for t in pos] * 6 + [("neg", t) for t in neg] * 6)
    test_file = tsv("test.tsv", [("pos", pos[0]), ("neg", neg[0])] * 3)
    monkeypatch.setenv("DANLU_CACHE", str(tmp_path / "cache"))
    run = train("chnsenticorp-lstm", ["data.name=text", f"data.train={train_file}", f"data.test={test_file}",
                                      "model={name: textcnn}", "train.epochs=5", "data.max_len=null",
                                      "data.min_freq=1"], runs_dir=tmp_path / "runs", progress=False).run
    body = {"inputs": ["这家酒店很好", "服务很差，不推荐，非常失望"], "top_k": 2}
    answers = []
    for backend in ("torch", "onnx"):
        with local(create_app(run, backend=backend)) as c:
            r = c.post("/v1/predict", json=body)
            assert r.status_code == 200
            answers.append(r.json()["predictions"])
            assert c.get("/v1/model").json()["kind"] == "text"
            assert_error(c.post("/v1/predict", json={"inputs": ["  "]}), 422, "non-empty string")
            assert_error(c.post("/v1/predict", json={"inputs": [["not", "text"]]}), 422, "non-empty string")
            # an unpaired surrogate is valid JSON; echoing it back must not fail the UTF-8 encoding
            r = c.post("/v1/predict", content='{"inputs": ["好\\udfff"]}', headers={"content-type": "application/json"})
            assert r.status_code == 200 and r.json()["predictions"][0]["input"] == "好\udfff"
    assert [row["input"] for row in answers[0]] == body["inputs"]
    for a, b in zip(answers[0], answers[1], strict=True):
        assert [t["label"] for t in a["top"]] == [t["label"] for t in b["top"]]
        assert np.allclose([t["probability"] for t in a["top"]], [t["probability"] for t in b["top"]], atol=1e-5)
    dims = onnx.load(str(run / "model.onnx")).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ["batch", "sequence"]


# ---------------------------------------------------------------- hostile and broken inputs


def test_odd_numbers_and_digits_are_422_not_500(client, tabular, digit_png):
    assert_error(client.post("/v1/predict", json={"inputs": [b64(digit_png)], "top_k": "²"}), 422, "top_k")
    features = tabular.get("/v1/model").json()["input"]["features"]
    huge = json.dumps({"inputs": [[1.0] * len(features)]}).replace("1.0", "1" + "0" * 400, 1)
    assert_error(tabular.post("/v1/predict", content=huge, headers=JSON), 422, "too large")
    assert_error(tabular.post("/v1/predict", json={"inputs": [["١٢", *[1.0] * (len(features) - 1)]]}), 422,
                 "not a number")


def test_flags_that_cannot_work_are_refused(runs):
    for wait, body in ((float("nan"), 10), (float("inf"), 10), (5, float("nan")), (5, float("inf"))):
        with pytest.raises(DanluError, match="--max-wait-ms"):
            create_app(runs.image, max_wait_ms=wait, max_body_mb=body)


def test_a_damaged_or_foreign_onnx_file_names_the_fix(runs, tmp_path):
    run = Path(shutil.copytree(runs.image, tmp_path / "run"))
    create_app(run, backend="onnx")  # exports model.onnx (digits: 1x8x8)
    good = (run / "model.onnx").read_bytes()
    (run / "model.onnx").write_bytes(good[: len(good) // 3])
    with pytest.raises(RunError, match="cannot be loaded") as e:
        create_app(run, backend="onnx")
    assert "danlu export" in e.value.hint
    other = Path(shutil.copytree(runs.tabular, tmp_path / "other"))
    create_app(other, backend="onnx")
    (run / "model.onnx").write_bytes((other / "model.onnx").read_bytes())
    with pytest.raises(RunError, match="not this run's export"):
        create_app(run, backend="onnx")


def test_stalled_and_vanished_clients(runs, digit_png):
    body = json.dumps({"inputs": [b64(digit_png)]}).encode()
    head = ("POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    with BackgroundServer(create_app(runs.image, body_timeout_s=0.5)) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as stalled:
            stalled.sendall(head.encode() + body[:5])  # then nothing
            answer = stalled.recv(65536).decode()
        assert answer.startswith("HTTP/1.1 408") and "did not arrive within 0.5 s" in answer
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as gone:
            gone.sendall(head.encode() + body[:5])
        time.sleep(0.3)
        text = httpx.get(server.url + "/metrics").text
        assert 'status="499"' in text and 'kind="client_gone"' in text and 'kind="bad_input"' not in text


def test_a_non_ascii_api_key_matches_itself(runs, digit_png):
    with local(create_app(runs.image, api_key="clé密")) as c:
        key = "clé密".encode().decode("latin-1")  # what an HTTP client puts on the wire, read as latin-1
        ok = c.post("/v1/predict", json={"inputs": [b64(digit_png)]}, headers={"X-API-Key": key.encode("latin-1")})
        assert ok.status_code == 200, ok.text
        bearer = c.post("/v1/predict", json={"inputs": [b64(digit_png)]},
                        headers={"X-API-Key": "", "Authorization": f"Bearer {key}".encode("latin-1")})
        assert bearer.status_code == 200, bearer.text
