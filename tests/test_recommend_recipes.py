"""Every recommendation recipe end to end on a 50-user MovieLens slice, and a generated CSV through the CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from danlu.recipe import builtin_recipes, load_recipe

SHARED = Path(os.environ.get("DANLU_DATA", Path(__file__).resolve().parents[2] / "shared" / "datasets"))
MOVIELENS = SHARED / "movielens"
RECIPES = [n for n in builtin_recipes() if load_recipe(n).data.name in ("movielens", "interactions")]


def test_there_is_a_recipe_per_model():
    from danlu.models.recommend_specs import RECOMMENDERS

    assert {load_recipe(n).model.name for n in RECIPES} == set(RECOMMENDERS)


@pytest.mark.skipif(not (MOVIELENS / "ratings.csv").is_file(), reason="shared movielens not available")
@pytest.mark.parametrize("name", RECIPES)
def test_recipe_trains_and_predicts_on_a_slice(name, tmp_path, capsys):
    from danlu.api import train
    from danlu.recommend.predict import RecommenderRun

    recipe = load_recipe(name)
    small = [f"model.{'dim' if recipe.model.name == 'two_tower' else 'factors'}=32"] \
        if recipe.model.options.get("loss") == "ials" else []  # solves ∝ d³
    result = train(name, ["recommend.limit_users=50", "train.epochs=2", *small], runs_dir=tmp_path, data_dir=SHARED,
                   progress=False, plots=name.endswith("ease"))
    report = json.loads((result.run / "report.json").read_text(encoding="utf-8"))
    assert isinstance(report["metrics"], dict) and all(np.isfinite(v) for v in report["metrics"].values()
                                                       if isinstance(v, float))
    assert json.loads((result.run / "id_maps.json").read_text())["users"][:3] == ["1", "2", "3"]
    if report["task"] == "recommendation":
        assert "popularity |" in (result.run / "report.md").read_text(encoding="utf-8") or \
            report["model"] == "popularity"
        assert 0 <= report["metrics"]["recall@20"] <= 1 and report["popularity"]["users"] == report["metrics"]["users"]
    else:
        assert report["metrics"]["baseline_rmse"] > 0
    run = RecommenderRun(result.run)
    out = run.recommend(user="1", k=5)
    seen = set(run.history.indices[run.history.indptr[0]:run.history.indptr[1]].tolist())
    assert len(out["recommendations"]) == 5
    assert not seen & {run.items.get(r["item"]) for r in out["recommendations"]}
    assert run.recommend(items=["1", "2"], k=3)["recommendations"]
    assert "not in the training data" in run.recommend(user="no such user", k=3)["notes"][0]
    if report["model"] in ("mf", "two_tower", "lightgcn") and report["task"] == "recommendation":
        from danlu.recommend.export import export_recommender

        done = export_recommender(result.run, say=lambda *_: None)
        assert done["parity_max_abs_diff"] < 1e-4 and done["parity_top10_identical"]


def test_a_generated_csv_goes_through_train_and_predict(tmp_path, capsys):
    from danlu.cli import main

    rng = np.random.default_rng(0)
    rows = ["customer,product,stars,when"]
    for u in range(40):
        liked = rng.choice(30, size=12, replace=False)
        rows += [f"c{u},p{i},{rng.integers(1, 6)},{1000 + 10 * t + u}" for t, i in enumerate(liked)]
    path = tmp_path / "events.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    code = main(["train", "movielens-itemknn", "data.name=interactions", f"data.path={path}",
                 "recommend.rating_scale=[1,5]", "--runs-dir", str(tmp_path / "runs"), "--json", "--quiet"])
    assert code in (0, None)
    run = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["run"]
    assert main(["predict", run, "--user", "c3", "--top-k", "3", "--json"]) in (0, None)
    out = json.loads(capsys.readouterr().out)
    assert len(out["recommendations"]) == 3 and all(r["item"].startswith("p") for r in out["recommendations"])
    assert all("because" in r for r in out["recommendations"])
    assert main(["predict", run, "--user", "c3", "--items", "p1"]) == 2  # one or the other
    capsys.readouterr()
    assert main(["data", "describe", "movielens-itemknn", "data.name=interactions", f"data.path={path}"]) == 0
    text = capsys.readouterr().out
    assert "users 40  items 30" in text and "cold start in test" in text and "time range" in text
    code = main(["train", "movielens-ease", "data.name=interactions", f"data.path={path}",
                 "recommend.rating_scale=[2,5]", "--runs-dir", str(tmp_path / "runs"), "--quiet"])
    assert code == 2 and "outside the declared scale" in capsys.readouterr().err


def test_serve_recommends_for_a_user_and_for_items(tmp_path):
    from fastapi.testclient import TestClient

    from danlu.api import train
    from danlu.serve import create_app

    rng = np.random.default_rng(1)
    rows = ["user,item,timestamp"] + [f"u{u},i{i},{t}" for u in range(30) for t, i in
                                      enumerate(rng.choice(25, size=8, replace=False))]
    path = tmp_path / "events.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    run = train("movielens-ease", ["data.name=interactions", f"data.path={path}"], runs_dir=tmp_path,
                progress=False, plots=False).run
    # the lifespan starts the micro-batcher; Host: localhost as a client on this machine says
    with TestClient(create_app(run, api_key="k"), base_url="http://localhost") as client:
        _ask_the_server(client)


def _ask_the_server(client):
    assert client.post("/v1/recommend", json={"user": "u1"}).status_code == 401
    head = {"X-API-Key": "k"}
    got = client.post("/v1/recommend", json={"user": "u1", "k": 4, "exclude": ["i3"]}, headers=head).json()
    assert len(got["recommendations"]) == 4 and "i3" not in {r["item"] for r in got["recommendations"]}
    got = client.post("/v1/recommend", json={"items": ["i1", "i2"], "k": 3}, headers=head).json()
    assert [r["item"] for r in got["recommendations"]][:1] and got["known_items"] == 2
    bad = client.post("/v1/recommend", json={"user": "u1", "items": ["i1"]}, headers=head)
    assert bad.status_code == 422 and "exactly one" in bad.json()["error"]
    assert client.post("/v1/recommend", json={"user": "u1", "k": 0}, headers=head).status_code == 422
    assert client.get("/v1/model", headers=head).json()["metrics"]["recall@20"] >= 0


def test_a_hostile_recommendation_run_is_refused_not_hung(tmp_path):
    """A FIFO in place of a run file is "damaged" (exit 2), never a read that blocks forever."""
    import signal

    from danlu.api import train
    from danlu.errors import RunError
    from danlu.recommend import is_recommendation_run
    from danlu.recommend.predict import RecommenderRun

    rows = ["user,item,timestamp"] + [f"u{u},i{(u * 7 + t) % 20},{t}" for u in range(12) for t in range(6)]
    path = tmp_path / "events.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    run = train("movielens-popularity", ["data.name=interactions", f"data.path={path}"], runs_dir=tmp_path,
                progress=False, plots=False).run
    signal.alarm(20)  # fail, not hang, if a read blocks
    try:
        (run / "history.safetensors").unlink()
        os.mkfifo(run / "history.safetensors")
        with pytest.raises(RunError, match="not a regular file"):
            RecommenderRun(run)
        (run / "schema.json").unlink()
        os.mkfifo(run / "schema.json")
        assert not is_recommendation_run(run)
    finally:
        signal.alarm(0)


def test_the_recommendation_server_stands_behind_serves_gate(tmp_path):
    """Host allow-list, JSON only, and the body limit counted on the bytes received (a chunked body too)."""
    from fastapi.testclient import TestClient

    from danlu.api import train
    from danlu.serve import create_app

    rows = ["user,item,timestamp"] + [f"u{u},i{(u * 7 + t) % 20},{t}" for u in range(20) for t in range(6)]
    table = tmp_path / "events.csv"
    table.write_text("\n".join(rows) + "\n", encoding="utf-8")
    run = train("movielens-popularity", ["data.name=interactions", f"data.path={table}"],
                runs_dir=tmp_path / "runs", progress=False, plots=False).run
    with TestClient(create_app(run, max_body_mb=0.01), base_url="http://localhost") as client:
        assert client.post("/v1/recommend", json={"items": []}).status_code in (200, 422)
        assert client.get("/healthz", headers={"Host": "attacker.example"}).status_code == 421
        assert client.post("/v1/recommend", content=b"user=1",
                           headers={"Content-Type": "application/x-www-form-urlencoded"}).status_code == 415

        def chunks():
            for _ in range(40):
                yield b" " * 1024

        r = client.post("/v1/recommend", content=chunks(), headers={"Content-Type": "application/json"})
        assert r.status_code == 413


def test_the_studio_lists_a_recommendation_run_with_its_ranking_metrics(tmp_path):
    from fastapi.testclient import TestClient

    from danlu.api import train
    from danlu.studio.app import create_studio_app

    rows = ["user,item,timestamp"] + [f"u{u},i{(u * 7 + t) % 20},{t}" for u in range(20) for t in range(6)]
    table = tmp_path / "events.csv"
    table.write_text("\n".join(rows) + "\n", encoding="utf-8")
    train("movielens-ease", ["data.name=interactions", f"data.path={table}"], runs_dir=tmp_path / "runs",
          progress=False, plots=False)
    with TestClient(create_studio_app(tmp_path / "runs"), base_url="http://localhost") as client:
        (row,) = client.get("/api/runs").json()["runs"]
    assert row["status"] == "done" and set(row["key"]) == {"recall@20", "ndcg@20"}
