"""A table ensemble (model table_ensemble) is a run like any: assembled from trained lightgbm / tabular_net runs,
then evaluate, predict, serve and export (one ONNX graph over both members, with the parity check)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from danlu.errors import DanluError
from tests.test_boosting import write_table

QUICK_GBM = ["model.learning_rate=0.3", "model.n_estimators=60", "model.early_stopping_rounds=10",
             "model.refit=false"]
QUICK_NET = ["train.epochs=4", "train.batch_size=64", "model.hidden=[32]"]


def _members(root, regression):
    from danlu.api import train

    csv = write_table(root / ("reg.csv" if regression else "cls.csv"), n=300, seed=2, regression=regression)
    data = [f"data.path={csv}", "data.target=target", f"data.task={'regression' if regression else 'classification'}"]
    gbm = train("table-lightgbm", [*data, *QUICK_GBM], runs_dir=root / "runs", progress=False, plots=False)
    net = train("table-net", [*data, *QUICK_NET], runs_dir=root / "runs", progress=False, plots=False)
    return {"lightgbm": str(gbm.run), "tabular_net": str(net.run)}


@pytest.fixture(scope="module")
def ens(tmp_path_factory):
    from danlu.api import train
    from danlu.autorecipe.run import ensemble_recipe

    root = tmp_path_factory.mktemp("ens")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DANLU_CACHE", str(tmp_path_factory.mktemp("cache")))
        out = {}
        for kind, regression in (("cls", False), ("reg", True)):
            members = _members(root, regression)
            recipe = ensemble_recipe(members, {"lightgbm": 0.6, "tabular_net": 0.4}, "lightgbm")
            out[kind] = SimpleNamespace(members=members, result=train(recipe, runs_dir=root / "runs", progress=False,
                                                                      plots=False))
    return SimpleNamespace(root=root, **out)


def _outputs(run, x):
    from danlu.predictor import Predictor

    return Predictor.load(run).forward(x).numpy()


@pytest.mark.parametrize("kind", ["cls", "reg"])
def test_the_ensemble_is_the_weighted_blend_of_its_members(ens, kind):
    from danlu.predictor import Predictor

    case = getattr(ens, kind)
    run = case.result.run
    recipe = (run / "recipe.yaml").read_text(encoding="utf-8")
    assert "table_ensemble" in recipe and "weight: 0.6" in recipe and not list(run.glob("*.pkl"))
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "done"
    p = Predictor.load(run)
    rows = [{"age": "70", "income": "30000", "city": "paris", "score": "1.2"},
            {"age": "20", "income": "", "city": "lille", "score": "-1"}]
    x = p.tabular_tensor(rows)
    want = 0.6 * _outputs(case.members["lightgbm"], x) + 0.4 * _outputs(case.members["tabular_net"], x)
    assert np.allclose(p.forward(x).numpy(), want, atol=1e-5)  # probabilities, or the target's units
    metric = "accuracy" if kind == "cls" else "r2"
    assert case.result.metrics[metric] > (0.6 if kind == "cls" else 0.3)  # the net had 4 epochs


def test_evaluate_predict_and_serve_take_the_ensemble_run(ens, cli):
    from fastapi.testclient import TestClient

    from danlu.api import evaluate
    from danlu.serve.app import create_app

    run = ens.cls.result.run
    assert evaluate(run, "val")["metrics"]["accuracy"] > 0.5
    rows = ens.root / "rows.csv"
    rows.write_text("age,income,city,score\n70,30000,paris,1.2\n", encoding="utf-8")
    code, out, err = cli("predict", run, rows, "--json")
    assert code == 0, err
    assert "high" in out
    with TestClient(create_app(run), base_url="http://localhost") as c:
        got = c.post("/v1/predict", json={"inputs": [{"age": 70, "income": 3e4, "city": "paris", "score": 1.2}]})
    assert got.status_code == 200, got.text
    assert got.json()["predictions"][0]["top"][0]["label"] == "high"
    from danlu.studio.app import create_studio_app

    with TestClient(create_studio_app(run.parent), base_url="http://127.0.0.1") as c:
        row = next(r for r in c.get("/api/runs").json()["runs"] if r["run"] == run.name)
        assert row["status"] == "done" and row["model"] == "table_ensemble" and not row["problems"]
        got = c.post(f"/api/runs/{run.name}/predict",
                     json={"inputs": [{"age": 70, "income": 3e4, "city": "paris", "score": 1.2}]})
    assert got.status_code == 200, got.text
    assert got.json()["predictions"][0]["top"][0]["label"] == "high"


def test_export_writes_one_graph_over_both_members_with_parity(ens):
    from danlu.export import export_onnx

    for case in (ens.cls, ens.reg):
        done = export_onnx(case.result.run, say=lambda *_: None)
        assert done.parity.agreement == 1.0
    assert done.parity.max_abs_diff < 1e-2  # regression, in the target's units (tens)


def test_a_member_that_read_other_data_is_refused(ens, tmp_path):
    from danlu.api import train
    from danlu.autorecipe.run import ensemble_recipe

    other = write_table(tmp_path / "other.csv", n=300, seed=9)
    net = train("table-net", [f"data.path={other}", "data.target=target", "data.task=classification", *QUICK_NET],
                runs_dir=tmp_path / "runs", progress=False, plots=False)
    recipe = ensemble_recipe({"lightgbm": ens.cls.members["lightgbm"], "tabular_net": str(net.run)},
                             {"lightgbm": 0.5, "tabular_net": 0.5}, "lightgbm")
    with pytest.raises(DanluError, match="read the data differently"):
        train(recipe, runs_dir=tmp_path / "runs", progress=False, plots=False)


def test_weights_must_add_up_to_one():
    from danlu.models.specs import validate_options

    member = {"name": "lightgbm", "weight": 0.5, "run": "x"}
    with pytest.raises(DanluError, match="add up to 1"):
        validate_options("table_ensemble", {"members": [member, {**member, "weight": 0.4}]})
    assert torch is not None


def test_time_limit_search_keeps_the_ensemble_run_when_it_wins_on_validation(ens, monkeypatch):
    """_try_ensemble assembles the run and says why it is kept; a blend no better than the best single is not."""
    from danlu.autorecipe import ensemble as selection
    from danlu.autorecipe.run import Entry, _try_ensemble

    members = ens.reg.members
    done = [Entry("lightgbm", "done", val=0.2, run=members["lightgbm"], val_samples=27),
            Entry("tabular_net", "done", val=0.1, run=members["tabular_net"], val_samples=27)]
    found = {"weights": {"lightgbm": 0.75, "tabular_net": 0.25}, "val": 0.9, "test": 0.9}
    monkeypatch.setattr(selection, "ensemble_entry", lambda runs, data_dir=None: found)
    board = list(done)
    kept = _try_ensemble(done, done[0], board, "r2", ens.root / "runs", None, False)
    assert kept is not None
    entry, result = kept
    assert entry is board[-1] and entry.run == str(result.run)
    assert "kept" in entry.note and "0.75 lightgbm" in entry.note
    assert "weight: 0.75" in (result.run / "recipe.yaml").read_text(encoding="utf-8")
    board = list(done)
    monkeypatch.setattr(selection, "ensemble_entry", lambda runs, data_dir=None: {**found, "val": 0.15})
    assert _try_ensemble(done, done[0], board, "r2", ens.root / "runs", None, False) is None
    assert "lightgbm kept" in board[-1].note and board[-1].run is None
