"""Boosted trees (model.name=lightgbm): train → run folder → predict → serve → ONNX export with parity."""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from danlu.errors import DanluError


def write_table(path, n=400, seed=0, regression=False):
    """Numbers, a category and empty cells; the target depends on all three."""
    rng = np.random.default_rng(seed)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["age", "income", "city", "score", "target"])
        for _ in range(n):
            age, income = rng.uniform(18, 80), rng.lognormal(10, 1)
            city = rng.choice(["paris", "lyon", "nice", "lille"])
            score = rng.normal()
            signal = (age - 50) / 15 + (city in ("paris", "nice")) * 1.5 + score
            y = signal * 10 + rng.normal() if regression else ("high" if signal > 1 else "mid" if signal > -0.5
                                                               else "low")
            cells = [f"{age:.1f}", f"{income:.0f}", city, f"{score:.3f}"]
            if rng.random() < 0.1:
                cells[rng.integers(0, 4)] = ""
            w.writerow([*cells, f"{y:.3f}" if regression else y])
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from danlu.api import train

    root = tmp_path_factory.mktemp("boost")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DANLU_CACHE", str(tmp_path_factory.mktemp("cache")))
        cls_csv = write_table(root / "cls.csv")
        reg_csv = write_table(root / "reg.csv", regression=True, seed=1)
        common = ["model.learning_rate=0.3", "model.n_estimators=300", "model.early_stopping_rounds=20"]
        cls = train("breast-cancer-lightgbm", ["data.name=csv", f"data.path={cls_csv}", "data.target=target", *common],
                    runs_dir=root / "runs", progress=False)
        reg = train("diabetes-lightgbm", ["data.name=csv", f"data.path={reg_csv}", "data.target=target", *common],
                    runs_dir=root / "runs", progress=False)
    return SimpleNamespace(cls=cls, reg=reg, root=root)


def test_trains_early_stopped_and_leaves_a_run_folder_without_pickles(runs):
    run = runs.cls.run
    assert runs.cls.metrics["accuracy"] > 0.8
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "done" and 1 <= status["best_epoch"] < 300
    assert status["stopped_early"] and "did not improve" in status["stop_reason"]
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"train_loss", "val_loss", "val_accuracy"} <= set(history[0])
    import lightgbm as lgb

    booster = lgb.Booster(model_file=str(run / "model.txt"))  # LightGBM's own text format, readable outside danlu
    assert booster.current_iteration() == round(status["best_epoch"] * 1.1)  # refit on train + val, 1.1x rounds
    assert any("trained again on train + val" in n for n in json.loads((run / "report.json").read_text())["notes"])
    assert not list(run.glob("*.pkl")) and (run / "model.safetensors").is_file()
    assert runs.reg.metrics["r2"] > 0.7


def test_predict_after_reload_matches_the_booster(runs):
    from danlu.predictor import Predictor

    p = Predictor.load(runs.cls.run)
    rows = [{"age": "70", "income": "30000", "city": "paris", "score": "1.2"},
            {"age": "20", "income": "", "city": "lille", "score": "-1"}]
    out = p.predict(rows, top_k=3)
    assert [r["top"][0]["label"] for r in out] == ["high", "low"]
    x = p.tabular_tensor(rows).numpy()
    import lightgbm as lgb

    booster = lgb.Booster(model_file=str(runs.cls.run / "model.txt"))
    want = booster.predict(x)  # LightGBM's own probabilities, [N, 3]
    got = p.forward(torch.from_numpy(x)).numpy()
    assert np.allclose(got, want, atol=1e-6)


def test_onnx_export_parity_classification_and_regression(runs):
    from danlu.export import export_onnx

    for result in (runs.cls, runs.reg):
        done = export_onnx(result.run, say=lambda *_: None)
        assert done.parity.agreement == 1.0 and done.exporter == "onnxmltools"
        meta = json.loads((result.run / "model.onnx.json").read_text())
        assert meta["model"] == "lightgbm" and "onnxmltools" in meta["exporter"]
    assert done.parity.max_abs_diff < 1e-3  # regression: the target's units, through the added Mul/Add


def test_serve_answers_with_the_boosted_run(runs):
    from fastapi.testclient import TestClient

    from danlu.serve.app import create_app

    with TestClient(create_app(runs.reg.run), base_url="http://localhost") as c:
        got = c.post("/v1/predict", json={"inputs": [{"age": 60, "income": 5e4, "city": "nice", "score": 0.5}]})
    assert got.status_code == 200, got.text
    value = got.json()["predictions"][0]["prediction"]["target"]
    assert np.isfinite(value)


def test_float32_thresholds_make_onnx_and_lightgbm_agree_on_the_boundary():
    """A float32 input equal to float32(t) rounded up past t went left in ONNX and right in LightGBM."""
    import lightgbm as lgb
    import onnxruntime as ort

    from danlu.models.boosting import BoostedTrees, float32_thresholds
    from danlu.schema import Schema

    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 3)).astype(np.float32)
    y = x[:, 0] * 3 + x[:, 1]
    booster = lgb.train({"objective": "regression", "verbosity": -1, "num_threads": 1}, lgb.Dataset(x, y), 20)
    rounded = lgb.Booster(model_str=float32_thresholds(booster.model_to_string()))
    assert np.array_equal(rounded.predict(x), booster.predict(x))  # same decisions for every float32 input
    schema = Schema(kind="tabular", task="regression", input_shape=[3], targets=["y"], target_mean=[0.0],
                    target_std=[1.0], features=["a", "b", "c"])
    model = BoostedTrees(schema, {})
    model.set_booster(booster)
    # the boundary values: every threshold as float32, which LightGBM's double threshold may sit below
    edges = np.array([np.float32(t) for t in _thresholds(booster)], np.float32)
    probe = np.repeat(x[:len(edges)], 1, 0)
    probe[:, 0] = edges[: len(probe)]
    session = ort.InferenceSession(model.to_onnx(3), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": probe})[0][:, 0]
    assert np.allclose(got, booster.predict(probe), atol=1e-4)


def _thresholds(booster) -> list[float]:
    dump = booster.dump_model()["tree_info"]
    out = []

    def walk(node):
        if "threshold" in node:
            if node["split_feature"] == 0:
                out.append(float(node["threshold"]))
            walk(node["left_child"])
            walk(node["right_child"])

    for tree in dump:
        walk(tree["tree_structure"])
    return out


def test_boosted_trees_refuse_the_nets_plug_ins(tmp_path):
    from danlu.api import train

    with pytest.raises(DanluError, match="does not take train.privacy"):
        train("breast-cancer-lightgbm", ["train.privacy.epsilon=3"], runs_dir=tmp_path, progress=False)
    assert not list(tmp_path.iterdir())  # refused before any file


def test_builtin_lightgbm_recipes_validate_with_their_tune_blocks():
    from danlu.recipe import load_recipe

    for name in ("breast-cancer-lightgbm", "diabetes-lightgbm"):
        recipe = load_recipe(name)
        assert recipe.model.name == "lightgbm" and recipe.tune and "model.learning_rate" in recipe.tune


def test_tree_shap_explains_a_boosted_row_exactly(runs):
    """auto = tree SHAP (LightGBM's pred_contrib): per-column values that, with the bias, sum to the margin."""
    from danlu.explanations.api import explain
    from danlu.predictor import Predictor

    row = {"age": "70", "income": "30000", "city": "paris", "score": "1.2"}
    result = explain(runs.cls.run, [row])
    assert result["method"] == "tree_shap"
    record = result["explanations"][0]
    assert [c for c, _ in record["features"]] == ["age", "income", "city", "score"]
    p = Predictor.load(runs.cls.run)
    x = p.tabular_tensor([row])
    target = p.schema.classes.index(record["target"]["label"])
    bias = p.model.contributions(x.numpy())[0, target, -1]
    margin = float(p.model(x)[0, target])
    assert abs(sum(v for _, v in record["features"]) + bias - margin) < 1e-4


def test_auto_schedule_from_the_training_rows_and_explicit_options_win():
    from danlu.models.boosting import LARGE_TABLE, boosting_schedule, idle_cores
    from danlu.models.specs import validate_options

    auto = validate_options("lightgbm", {})
    assert (auto["learning_rate"], auto["n_estimators"], auto["refit"]) == ("auto", "auto", "auto")
    assert boosting_schedule(auto, LARGE_TABLE - 1) == (2000, 0.05, True)
    assert boosting_schedule(auto, LARGE_TABLE) == (1000, 0.1, False)
    fixed = validate_options("lightgbm", {"learning_rate": 0.2, "n_estimators": 50, "refit": True})
    assert boosting_schedule(fixed, 10 * LARGE_TABLE) == (50, 0.2, True)
    with pytest.raises(DanluError, match="learning_rate"):
        validate_options("lightgbm", {"learning_rate": 0})
    assert 1 <= idle_cores() <= 512
