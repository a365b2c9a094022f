"""danlu tune over recommendation recipes, and resuming a recommendation run after a crash (generated tables)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from danlu.errors import DanluError


def _table(tmp_path: Path, users: int = 40, items: int = 30, per_user: int = 12) -> Path:
    rng = np.random.default_rng(0)
    rows = ["customer,product,stars,when"]
    for u in range(users):
        # two tastes, so neighbours and factors have something to find
        pool = np.arange(items // 2) if u % 2 else np.arange(items // 2, items)
        liked = rng.choice(pool, size=min(per_user, len(pool)), replace=False)
        rows += [f"c{u},p{i},{rng.integers(1, 6)},{1000 + 10 * t + u}" for t, i in enumerate(liked)]
    path = tmp_path / "events.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def _on(path: Path) -> list[str]:
    return ["data.name=interactions", f"data.path={path}", "recommend.rating_scale=[1,5]"]


def test_tune_searches_ease_and_writes_a_best_recipe_that_trains(tmp_path):
    from danlu.api import train
    from danlu.tuning import tune

    data = _table(tmp_path)
    result = tune("movielens-ease", _on(data), trials=3, sampler="random", runs_dir=tmp_path / "runs")
    assert result.metric == "val_recall@20" and result.direction == "maximize"
    assert result.counts["complete"] == 3 and result.best is not None
    assert 0 <= result.best["value"] <= 1 and 20 <= result.best["params"]["model.l2"] <= 3000
    rows = [json.loads(x) for x in (Path(result.best["run"]) / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["val_recall@20"] == pytest.approx(result.best["value"])
    best = result.folder / "best.yaml"
    assert "model.l2" not in best.read_text() and "tune:" not in best.read_text()
    done = train(best, runs_dir=tmp_path / "again", progress=False, plots=False)
    assert done.status == "done" and 0 <= done.metrics["recall@20"] <= 1


def test_tune_scores_mf_per_epoch_on_the_chosen_metric(tmp_path):
    from danlu.tuning import tune

    data = _table(tmp_path)
    result = tune("movielens-bpr", [*_on(data), "train.epochs=3", "model.factors=8"], trials=2, sampler="random",
                  metric="val_ndcg@10", runs_dir=tmp_path / "runs")
    assert result.counts["complete"] == 2
    for t in result.trials:
        rows = [json.loads(x) for x in (Path(t["run"]) / "metrics.jsonl").read_text().splitlines()]
        assert [r["epoch"] for r in rows] == list(range(1, len(rows) + 1)) and len(rows) == t["epochs"] >= 1
        assert t["value"] == pytest.approx(max(r["val_ndcg@10"] for r in rows))
        assert not (Path(t["run"]) / "checkpoints").exists()  # trials keep no resumable state
    with pytest.raises(DanluError, match="val_ndcg@20"):
        tune("movielens-bpr", _on(data), trials=1, metric="val_ndcg@30", runs_dir=tmp_path / "runs2")


class _Prune:
    """A pruner that gives up after the first epoch (as Optuna's trial.should_prune)."""

    def __init__(self):
        self.reported = []

    def report(self, value, step):
        self.reported.append((step, value))

    def should_prune(self):
        return True


def test_a_pruned_mf_run_stops_after_its_epoch_and_a_closed_form_one_is_never_pruned(tmp_path):
    from danlu.api import train
    from danlu.tuning import ReportAndPrune

    data = _table(tmp_path)
    trial = _Prune()
    result = train("movielens-bpr", [*_on(data), "train.epochs=4", "model.factors=8"], runs_dir=tmp_path,
                   progress=False, plots=False, callbacks=[ReportAndPrune(trial, "val_recall@20")])
    status = json.loads((result.run / "status.json").read_text())
    assert result.status == "pruned" and status["status"] == "pruned" and trial.reported[0][0] == 1
    assert len(trial.reported) == 1 and not (result.run / "report.json").exists()
    trial = _Prune()
    result = train("movielens-ease", _on(data), runs_dir=tmp_path, progress=False, plots=False,
                   callbacks=[ReportAndPrune(trial, "val_recall@20")])
    assert result.status == "done" and len(trial.reported) == 1


class _Crash:
    def __init__(self, after: int):
        self.after = after

    def on_epoch_end(self, loop, metrics):
        if loop.epoch == self.after:
            raise KeyboardInterrupt

    def should_stop(self, loop):
        return None


@pytest.mark.parametrize("recipe", ["movielens-bpr", "movielens-twotower", "movielens-ease", "movielens-mf-ratings",
                                    "movielens-ials"])
def test_an_interrupted_run_resumes_to_the_uninterrupted_result(recipe, tmp_path, capsys):
    from safetensors.numpy import load_file

    from danlu.api import train

    data = _table(tmp_path)
    extra = {"movielens-bpr": ["train.epochs=5", "model.factors=8", "train.early_stop.patience=10"],
             "movielens-twotower": ["train.epochs=5", "model.dim=8", "train.early_stop.patience=10",
                                    "model.loss=softmax"],  # the gradient-trained tower: per-epoch checkpoints
             "movielens-ease": [], "movielens-mf-ratings": ["train.epochs=3", "recommend.folds=2"],
             "movielens-ials": ["train.epochs=3", "model.factors=8"]}[recipe]
    args = [*_on(data), *extra]
    whole = train(recipe, args, runs_dir=tmp_path / "a", progress=False, plots=False)
    trained = recipe in ("movielens-bpr", "movielens-twotower")
    crash_after = 3 if trained else 1
    with pytest.raises(KeyboardInterrupt):
        train(recipe, args, runs_dir=tmp_path / "b", progress=False, plots=False, callbacks=[_Crash(crash_after)])
    (run,) = (tmp_path / "b").iterdir()
    assert json.loads((run / "status.json").read_text())["status"] == "interrupted"
    if trained:
        assert (run / "checkpoints" / "select.safetensors").is_file()
    capsys.readouterr()
    resumed = train(recipe, resume=run, progress=True, plots=False)
    assert resumed.run == run and resumed.status == "done"
    if trained:  # continued from the checkpoint, not trained again from the start
        out = capsys.readouterr().out
        assert "resumed after epoch 3" in out and "epoch 1 " not in out and "epoch 4 " in out
    drop = ("fit_seconds", "eval_seconds")
    assert {k: v for k, v in resumed.metrics.items() if k not in drop} == \
        {k: v for k, v in whole.metrics.items() if k not in drop}
    a, b = load_file(str(whole.run / "model.safetensors")), load_file(str(run / "model.safetensors"))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    history = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    first = [json.loads(x) for x in (whole.run / "metrics.jsonl").read_text().splitlines()]
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in history] == \
        [{k: v for k, v in r.items() if k != "seconds"} for r in first]
    with pytest.raises(DanluError, match="nothing to resume"):
        train(recipe, resume=run, progress=False)


def test_a_run_killed_while_refitting_resumes_from_the_refit_checkpoint(tmp_path, monkeypatch):
    from danlu.api import train
    from danlu.recommend import checkpoint

    data = _table(tmp_path, users=60, items=120, per_user=20)
    args = [*_on(data), "train.epochs=4", "model.factors=8", "train.early_stop.patience=10", "train.lr=0.005",
            "recommend.k=[5]", "model.loss=bpr", "model.dropout=0", "model.reg=0.0001"]
    whole = train("movielens-bpr", args, runs_dir=tmp_path / "a", progress=False, plots=False)
    assert whole.report["training"]["refit"]["epochs"] == 2  # so a kill can fall between the refit's epochs
    save = checkpoint.save_fit_state

    def save_then_die(path, *a, **k):
        save(path, *a, **k)
        if path.name == "refit.safetensors" and a[-1]["epoch"] == 1:
            raise KeyboardInterrupt  # as a kill right after the refit's first checkpoint (of two)

    monkeypatch.setattr(checkpoint, "save_fit_state", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train("movielens-bpr", args, runs_dir=tmp_path / "b", progress=False, plots=False)
    monkeypatch.setattr(checkpoint, "save_fit_state", save)
    (run,) = (tmp_path / "b").iterdir()
    resumed = train("movielens-bpr", resume=run, progress=False, plots=False)
    assert resumed.metrics["recall@5"] == whole.metrics["recall@5"] and resumed.metrics["mrr"] == whole.metrics["mrr"]
    assert resumed.report["training"]["refit"]["epochs"] == whole.report["training"]["refit"]["epochs"]


@pytest.mark.parametrize("recipe", ["movielens-bpr", "movielens-itemknn", "movielens-ease"])
def test_a_batch_of_requests_gets_the_answers_asked_one_by_one(recipe, tmp_path):
    from danlu.api import train
    from danlu.recommend.predict import RecommenderRun

    data = _table(tmp_path)
    run = train(recipe, [*_on(data), "train.epochs=2", "model.factors=8"] if recipe.endswith("bpr") else _on(data),
                runs_dir=tmp_path, progress=False, plots=False).run
    served = RecommenderRun(run)
    asks = [dict(user="c3", k=5), dict(items=["p1", "p2", "nope"], k=4, exclude=["p3"]), dict(user="nobody", k=3),
            dict(user="c4", k=6, exclude=["p20"])]
    batched = served.answer_many([served.ask(**a) for a in asks])
    alone = [served.recommend(**a) for a in asks]
    assert [[r["item"] for r in b["recommendations"]] for b in batched] == \
        [[r["item"] for r in a["recommendations"]] for a in alone]
    assert batched == alone or recipe.endswith("bpr")  # scores may differ in the last float bits under BLAS
    assert "not in the training data" in batched[2]["notes"][0] and "nope" in batched[1]["notes"][0]
    if served.model.explains:  # the batched "because you rated X" is the one asked item by item
        hist = served.ask(user="c3").history
        got = [r["because"]["item"] for r in batched[0]["recommendations"]]
        want = [served.items.ids[served.model.because(hist, served.items.get(r["item"]))]
                for r in batched[0]["recommendations"]]
        assert got == want and len(got) == 5


def test_tune_minimizes_the_folds_validation_rmse_for_the_rating_task(tmp_path):
    from danlu.tuning import tune

    data = _table(tmp_path)
    result = tune("movielens-mf-ratings", [*_on(data), "train.epochs=2", "recommend.folds=2"], trials=2,
                  sampler="random", runs_dir=tmp_path / "runs")
    assert result.metric == "val_rmse" and result.direction == "minimize" and result.counts["complete"] == 2
    rows = [json.loads(x) for x in (Path(result.best["run"]) / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["epoch"] == 2  # the mean over both folds, not the best running mean
    assert result.best["value"] == pytest.approx(rows[0]["val_rmse"])
    assert (result.folder / "best.yaml").is_file()
