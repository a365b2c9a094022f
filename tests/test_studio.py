"""The studio's HTTP API (danlu/studio) on real run folders, damaged ones among them; and ``danlu runs compare``."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from danlu.runs.files import read_json
from danlu.runs.store import metrics_history
from danlu.studio.app import create_studio_app
from tests.conftest import last_json
from tests.studio_runs import built, digit_data_url, runs_folder


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return runs_folder(tmp_path_factory)


@pytest.fixture(scope="module")
def client(root):
    with TestClient(create_studio_app(root), base_url="http://127.0.0.1") as c:
        yield c


def rows_by_name(client) -> dict[str, dict]:
    r = client.get("/api/runs")
    assert r.status_code == 200
    return {row["run"]: row for row in r.json()["runs"]}


def test_list_shows_every_run_and_marks_the_broken_ones(client):
    rows = rows_by_name(client)
    a, live = built("a").name, built("live").name
    assert rows[built("b").name]["status"] == "done"
    assert rows[a]["status"] == "done" and rows[a]["recipe"] == "digits-mlp" and rows[a]["model"] == "mlp"
    assert rows[a]["key"]["accuracy"] == read_json(built("a") / "report.json")["metrics"]["accuracy"]
    assert rows[a]["duration_s"] > 0 and not rows[a]["problems"]
    assert rows[live]["status"] == "training" and rows[live]["epoch"] == 1
    assert rows["20000101-000000-broken"]["status"] == "damaged"
    assert "status.json" in rows["20000101-000000-broken"]["problems"][0]
    assert rows["20000101-000001-half"]["status"] == "damaged"
    assert "no status.json" in rows["20000101-000001-half"]["problems"][0]
    assert rows["20000101-000002-torn"]["status"] == "damaged"
    assert any("report.json" in p for p in rows["20000101-000002-torn"]["problems"])
    assert "digits-study" not in rows  # a study folder is no run


def test_open_a_run(client):
    a = built("a")
    d = client.get(f"/api/runs/{a.name}").json()
    assert d["recipe_yaml"] == (a / "recipe.yaml").read_text()
    assert d["report"]["per_class"]["7"]["support"] > 0
    assert [h["epoch"] for h in d["history"]] == [1, 2]
    assert d["figures"][0] == "learning_curves" and "confusion_test" in d["figures"]
    assert d["predictable"] and d["kind"] == "image" and d["input_shape"] == [1, 8, 8]
    png = client.get(f"/api/runs/{a.name}/figures/confusion_test.png")
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_damaged_run_opens_with_its_problems(client):
    d = client.get("/api/runs/20000101-000002-torn").json()
    assert [h["epoch"] for h in d["history"]] == [1, 2]  # the torn line is left out
    assert d["report"] is None and d["status"] == "damaged"


def test_unknown_names_and_path_tricks_are_404(client):
    for path in ("/api/runs/nope", "/api/runs/..", "/api/runs/.%2e", f"/api/runs/{built('a').name}/figures/x.png",
                 f"/api/runs/{built('a').name}/figures/..%2Frecipe.png", "/api/studies/nope"):
        r = client.get(path)
        assert r.status_code == 404, path
        assert "error" in r.json()


def test_live_metrics_poll_returns_new_epochs(client):
    live = built("live")
    first = client.get(f"/api/runs/{live.name}/metrics").json()
    assert first["status"] == "training" and len(first["rows"]) == 1
    row = dict(metrics_history(built("a"))[1])
    with (live / "metrics.jsonl").open("a") as f:
        f.write(json.dumps(row) + "\n")
    later = client.get(f"/api/runs/{live.name}/metrics", params={"after": 1}).json()
    assert later["rows"] == [row]


def test_compare_gives_deltas_against_the_first_and_the_recipe_diff(client):
    a, b = built("a"), built("b")
    c = client.get("/api/compare", params=[("runs", a.name), ("runs", b.name)]).json()
    ma, mb = read_json(a / "report.json")["metrics"], read_json(b / "report.json")["metrics"]
    assert c["metrics"]["accuracy"]["values"] == [ma["accuracy"], mb["accuracy"]]
    assert c["metrics"]["accuracy"]["deltas"][1] == pytest.approx(mb["accuracy"] - ma["accuracy"])
    assert c["recipe_diff"]["train.lr"] == [0.003, 0.01] and c["recipe_diff"]["train.epochs"] == [2, 3]
    assert "model.name" not in c["recipe_diff"]
    assert len(c["histories"][b.name]) == 3
    assert client.get("/api/compare", params={"runs": a.name}).status_code == 422


def test_studies_list_and_open(client):
    studies = client.get("/api/runs").json()["studies"]
    assert [s["study"] for s in studies] == ["digits-study"]
    s = client.get("/api/studies/digits-study").json()
    assert len(s["trials"]) == 2 and s["best"]["value"] == max(t["value"] for t in s["trials"] if t["value"])
    assert "history" in s["plots"] and s["best_yaml"].startswith("# The best trial")
    png = client.get("/api/studies/digits-study/plots/history.png")
    assert png.status_code == 200 and png.content[:4] == b"\x89PNG"


def test_try_it_predicts_an_image_and_its_samples_round_trip(client):
    a = built("a")
    r = client.post(f"/api/runs/{a.name}/predict", json={"inputs": [digit_data_url(7)], "top_k": 3})
    assert r.status_code == 200, r.text
    top = r.json()["predictions"][0]["top"]
    assert len(top) == 3 and top[0]["probability"] >= top[1]["probability"]
    samples = client.get(f"/api/runs/{a.name}/samples").json()["samples"]
    assert len(samples) == 6
    # oracle: each sample, sent back as the page sends it, gets the prediction the run recorded for it
    from safetensors.torch import load_file

    outputs = load_file(str(a / "parity.safetensors"))["outputs"][:6]
    preds = client.post(f"/api/runs/{a.name}/predict", json={"inputs": [s["input"] for s in samples]}).json()
    classes = read_json(a / "schema.json")["classes"]
    assert [p["top"][0]["label"] for p in preds["predictions"]] == [classes[i] for i in outputs.argmax(1).tolist()]


def test_try_it_refuses_bad_input_and_unfinished_runs(client):
    a = built("a")
    r = client.post(f"/api/runs/{a.name}/predict", json={"inputs": ["%%%"]})
    assert r.status_code == 422 and "base64" in r.json()["error"]
    r = client.post(f"/api/runs/{built('live').name}/predict", json={"inputs": [digit_data_url()]})
    assert r.status_code == 422 and "training" in r.json()["error"]


def test_try_it_explains_as_serve_does(client):
    import base64

    from danlu.explanations.api import Explainer
    from danlu.serve.explain_route import answer_body

    a = built("a")
    url = digit_data_url(7)
    r = client.post(f"/api/runs/{a.name}/explain", json={"inputs": [url], "top_k": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    # the oracle: /v1/explain's answer for the same image, built from a fresh Explainer of the run
    png = base64.b64decode(url.split(",", 1)[1])
    expected = answer_body(Explainer.load(a).explain([png], top_k=2, labels=["input 0"]), "image", "ig")
    assert body == {**expected, "skipped": []}
    assert body["method"] == "ig" and body["explanations"][0]["heatmap_png"]
    other = next(c for c in read_json(a / "schema.json")["classes"]
                 if str(c) != body["explanations"][0]["target"]["label"])
    r = client.post(f"/api/runs/{a.name}/explain", json={"inputs": [url], "target": str(other)})
    assert r.json()["explanations"][0]["target"]["label"] == other
    # refused as predict refuses, plus what only explanations check
    for bad, needle in ((["%%%"], "base64"), ([url] * 9, "at most 8"), ([], "nothing")):
        r = client.post(f"/api/runs/{a.name}/explain", json={"inputs": bad})
        assert r.status_code == 422 and needle in r.json()["error"], r.text
    r = client.post(f"/api/runs/{a.name}/explain", json={"inputs": [url], "method": "gradcam"})
    assert r.status_code == 422 and "ig" in r.json()["detail"]  # names the methods that fit
    r = client.post(f"/api/runs/{a.name}/explain", json={"inputs": [url], "target": "eleven"})
    assert r.status_code == 422 and "eleven" in r.json()["error"]
    r = client.post(f"/api/runs/{built('live').name}/explain", json={"inputs": [url]})
    assert r.status_code == 422 and "training" in r.json()["error"]


def test_api_key_guards_the_api_but_not_the_page(root):
    with TestClient(create_studio_app(root, api_key="sesame"), base_url="http://127.0.0.1") as c:
        assert c.get("/api/runs").status_code == 401
        assert c.get("/api/runs", headers={"X-API-Key": "wrong"}).status_code == 401
        assert c.get("/api/runs", headers={"Authorization": "Bearer sesame"}).status_code == 200
        assert c.get("/").status_code == 200
        assert c.get("/api/info", headers={"X-API-Key": "sesame"}).json()["key_required"] is True


def test_foreign_host_is_refused(client):
    assert client.get("/api/runs", headers={"Host": "evil.example"}).status_code == 421


def test_docs_come_from_local_assets(client):
    page = client.get("/docs").text
    assert "/docs-assets/swagger-ui-bundle.js" in page and "cdn" not in page.lower()
    js = client.get("/docs-assets/swagger-ui-bundle.js")
    assert js.status_code == 200 and len(js.content) > 100_000
    assert "/api/runs" in client.get("/openapi.json").json()["paths"]


def test_runs_compare_cli(cli, root, tmp_path):
    a, b = built("a"), built("b")
    png = tmp_path / "curves.png"
    code, out, err = cli("runs", "compare", str(a), str(b), "--png", str(png))
    assert code == 0, err
    assert "train.lr: A=0.003  |  B=0.01" in out and "accuracy" in out
    assert png.read_bytes()[:4] == b"\x89PNG"
    code, out, err = cli("runs", "compare", str(a), str(b), "--png", str(png), "--json")
    result = last_json(out)
    ma, mb = read_json(a / "report.json")["metrics"], read_json(b / "report.json")["metrics"]
    assert result["metrics"]["f1_macro"]["deltas"] == [0.0, pytest.approx(mb["f1_macro"] - ma["f1_macro"])]
    code, out, err = cli("runs", "compare", str(a))
    assert code == 2 and "at least two runs" in err
    code, out, err = cli("runs", "show", str(a), str(b))
    assert code == 2 and "runs compare" in err
