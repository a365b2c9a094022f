"""POST /v1/explain (TestClient): heat maps, token and feature scores, and the same refusals as /v1/predict."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from danlu.serve.app import create_app
from tests.explain_runs import digit_png_bytes, tiny_runs


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return tiny_runs(tmp_path_factory)


def local(app) -> TestClient:
    return TestClient(app, base_url="http://localhost")


@pytest.fixture(scope="module")
def digit_png() -> bytes:
    return digit_png_bytes()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def error(r, status: int, needle: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "detail"} and needle in body["error"], body
    return body


def test_an_image_comes_back_as_a_heat_map_and_its_raw_map(runs, digit_png):
    with local(create_app(runs.cnn)) as c:
        predicted = c.post("/v1/predict", json={"inputs": [b64(digit_png)]}).json()["predictions"][0]["top"][0]
        r = c.post("/v1/explain", json={"inputs": [b64(digit_png), "data:image/png;base64," + b64(digit_png)]})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["method"] == "guided_gradcam" and len(body["explanations"]) == 2  # auto on danlu's CNNs
        row = body["explanations"][0]
        assert row["target"]["label"] == predicted["label"] == row["top"][0]["label"]
        assert abs(row["target"]["probability"] - predicted["probability"]) < 1e-4
        png = Image.open(io.BytesIO(base64.b64decode(row["heatmap_png"])))
        assert png.format == "PNG" and min(png.size) >= 200  # an 8 px image is scaled up to be seen
        assert row["map"]["shape"] == [8, 8] and len(row["map"]["values"]) == 8
        assert any(v != 0 for line in row["map"]["values"] for v in line)

        ig = c.post("/v1/explain", json={"inputs": [b64(digit_png)], "method": "ig", "target": "3"}).json()
        one = ig["explanations"][0]
        assert ig["method"] == "ig" and one["target"]["label"] == "3" and "convergence_delta" in one
        # completeness: the map sums to f(x) - f(black) up to the reported delta (maps are pooled only above 32 px)
        total = sum(v for line in one["map"]["values"] for v in line)
        assert np.isfinite(total) and abs(one["convergence_delta"]) < 1.0
        assert "/v1/explain" in c.get("/openapi.json").json()["paths"]
        assert 'route="/v1/explain"' in c.get("/metrics").text  # counted under its own name


def test_refusals_match_predict_and_name_what_fits(runs, digit_png):
    with local(create_app(runs.mlp, max_inputs=64)) as c:
        body = error(c.post("/v1/explain", json={"inputs": [b64(digit_png)], "method": "gradcam"}), 422, "gradcam")
        assert "ig" in body["detail"]  # says which methods do fit
        body = error(c.post("/v1/explain", json={"inputs": [b64(digit_png)], "target": "eleven"}), 422, "eleven")
        assert "7" in str(body)  # lists the labels
        error(c.post("/v1/explain", json={"inputs": [b64(digit_png)], "method": "lime"}), 422, "lime")
        bad = {"inputs": ["not base64!"]}
        said = c.post("/v1/predict", json=bad).json()
        assert c.post("/v1/explain", json=bad).json() == said  # the same refusal, word for word
        assert c.post("/v1/explain", content=b"[1, 2", headers={"content-type": "application/json"}).json() == \
            c.post("/v1/predict", content=b"[1, 2", headers={"content-type": "application/json"}).json()
        nan = b'{"inputs": [[NaN, 1]], "method": "ig"}'
        assert c.post("/v1/explain", content=nan, headers={"content-type": "application/json"}).json() == \
            c.post("/v1/predict", content=nan, headers={"content-type": "application/json"}).json()
        error(c.post("/v1/explain", json={"inputs": [b64(digit_png)], "colour": "red"}), 422, "colour")
        error(c.post("/v1/explain", json={"inputs": [b64(digit_png)] * 9}), 422, "9")  # at most 8 per request
        error(c.post("/v1/explain", content=b"x", headers={"content-type": "text/plain"}), 415, "multipart/form-data")
        error(c.post("/v1/explain", json={"inputs": [b64(digit_png)], "method": 3}), 422, "method")
        ok = c.post("/v1/explain", json={"inputs": [b64(digit_png)]}).json()
        assert ok["method"] == "ig" and ok["explanations"][0]["map"]["shape"] == [8, 8]
    with local(create_app(runs.mlp, api_key="sesame")) as c:
        error(c.post("/v1/explain", json={"inputs": [b64(digit_png)]}), 401, "API key")
        keyed = c.post("/v1/explain", json={"inputs": [b64(digit_png)]}, headers={"X-API-Key": "sesame"})
        assert keyed.status_code == 200


def test_image_files_come_as_the_multipart_form_of_predict(runs, digit_png):
    with local(create_app(runs.cnn)) as c:
        files = [("files", ("seven.png", digit_png, "image/png")), ("files", ("again.png", digit_png, "image/png"))]
        predicted = c.post("/v1/predict", files=files).json()["predictions"]
        r = c.post("/v1/explain", files=files, data={"method": "ig", "top_k": "2"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["method"] == "ig" and [e["input"] for e in body["explanations"]] == ["seven.png", "again.png"]
        for row, pred in zip(body["explanations"], predicted, strict=True):
            assert len(row["top"]) == 2 and row["top"][0]["label"] == pred["top"][0]["label"]
            assert Image.open(io.BytesIO(base64.b64decode(row["heatmap_png"]))).format == "PNG"
        other = [e for e in c.get("/v1/model").json()["classes"] if e != predicted[0]["top"][0]["label"]][0]
        r = c.post("/v1/explain", files=files[:1], data={"target": str(other)})
        assert r.json()["explanations"][0]["target"]["label"] == other
        # what predict's form refuses is refused the same way; explain's own checks apply to form fields too
        for bad in ({"files": [("files", ("e.png", b"", "image/png"))]},
                    {"files": files, "data": {"files": "photo.jpg"}},
                    {"files": [("files", ("x.png", b"not an image", "image/png"))]}):
            assert c.post("/v1/explain", **bad).json() == c.post("/v1/predict", **bad).json()
        error(c.post("/v1/explain", files=files, data={"colour": "red"}), 422, "colour")
        assert "method" in c.post("/v1/explain", files=files, data={"colour": "red"}).json()["detail"]
        error(c.post("/v1/explain", files=files, data={"method": "shap"}), 422, "shap")
        error(c.post("/v1/explain", files=files, data={"target": "eleven"}), 422, "eleven")
        too_many = error(c.post("/v1/explain", files=files * 5), 422, "form")  # at most 8 per request, as JSON
        assert "8" in too_many["detail"]
    with local(create_app(runs.text)) as c:
        error(c.post("/v1/explain", files=[("files", ("a.png", digit_png, "image/png"))]), 422, "image and audio")


def test_table_rows_come_back_per_schema_column(runs):
    with local(create_app(runs.table)) as c:
        card = c.get("/v1/model").json()
        features = card["input"]["features"]
        row = {name: value for name, value in card["input"]["defaults"].items()}
        r = c.post("/v1/explain", json={"inputs": [row, [1.0] * len(features)]})
        assert r.status_code == 200, r.text
        first, second = r.json()["explanations"]
        assert [name for name, _ in first["features"]] == features
        assert all(abs(score) < 1e-4 for _, score in first["features"])  # the training mean vs itself: nothing
        assert any(abs(score) > 1e-4 for _, score in second["features"])
        shap = c.post("/v1/explain", json={"inputs": [[1.0] * len(features)], "method": "shap"}).json()
        assert shap["method"] == "shap" and len(shap["explanations"][0]["features"]) == len(features)


def test_text_comes_back_as_token_scores(runs):
    with local(create_app(runs.text)) as c:
        r = c.post("/v1/explain", json={"inputs": ["这家酒店很好", "房间太差了"]})
        assert r.status_code == 200, r.text
        first, second = r.json()["explanations"]
        assert "".join(tok for tok, _ in first["tokens"]) == "这家酒店很好"
        assert len(second["tokens"]) == 5 and all(isinstance(s, float) for _, s in second["tokens"])
        error(c.post("/v1/explain", json={"inputs": ["   "]}), 422, "input 0")
        body = error(c.post("/v1/explain", json={"inputs": ["很好"], "method": "gradcam"}), 422, "gradcam")
        assert "ig" in body["detail"]


def test_category_columns_get_the_training_frequency_baseline_as_in_the_api(tmp_path):
    """The server explains a row against the same baseline as danlu.explain: the training mean, which for a
    one-hot category column is each category's frequency (not 'no category at all')."""
    import danlu
    from danlu.api import train

    rng = np.random.default_rng(0)
    colours = rng.choice(["red", "green", "blue"], size=240, p=[0.6, 0.3, 0.1])
    size = rng.normal(size=240)
    label = np.where((colours == "red") ^ (size > 0.5), "yes", "no")
    lines = ["size,colour,label"] + [f"{s:.3f},{c},{lab}" for s, c, lab in zip(size, colours, label, strict=True)]
    table = tmp_path / "table.csv"
    table.write_text("\n".join(lines) + "\n", encoding="utf-8")
    run = train("breast-cancer-mlp", ["data.name=csv", f"data.path={table}", "data.target=label", "train.epochs=1"],
                runs_dir=tmp_path / "runs", progress=False).run
    row = {"size": 0.1, "colour": "blue"}
    expected = danlu.explain(run, [row])["explanations"][0]["features"]
    with local(create_app(run)) as c:
        r = c.post("/v1/explain", json={"inputs": [row]})
        assert r.status_code == 200, r.text
        got = r.json()["explanations"][0]["features"]
    assert [name for name, _ in got] == ["size", "colour"]
    assert got == [[name, score] for name, score in expected]
    assert abs(dict(got)["colour"]) > 1e-4  # blue is rare: against a red-heavy baseline it carries weight
