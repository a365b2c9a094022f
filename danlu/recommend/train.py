"""`danlu train` for recommendation recipes: interactions → split → fit → full-catalogue report → run folder.

Protocol: models are fit on the training part; the validation part picks the epoch (MF, two-tower); the
test metrics then score each user from everything known before test (train + validation), masking those
items. Popularity is fit and scored the same way and reported beside every model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from danlu.errors import RecipeError
from danlu.models.recommend_specs import RECOMMENDERS
from danlu.recipe import Recipe
from danlu.recommend import RECOMMEND_DATA
from danlu.recommend.data import Prepared, config_of, load_interactions, prepare_ranking
from danlu.recommend.metrics import DEFINITIONS, evaluate_ranking


def check_recipe(recipe: Recipe) -> None:
    if recipe.model.name not in RECOMMENDERS:
        raise RecipeError(f"model '{recipe.model.name}' does not take interaction data ({recipe.data.name})",
                          hint=f"recommendation models: {', '.join(RECOMMENDERS)}")
    if recipe.data.name not in RECOMMEND_DATA:
        raise RecipeError(f"model '{recipe.model.name}' recommends from a user-item table, but data.name is "
                          f"'{recipe.data.name}'", hint=f"data.name: one of {', '.join(RECOMMEND_DATA)}")


def fit_model(recipe: Recipe, model: Any, prepared: Prepared, say: Any, rebuild: Any = None) -> dict[str, Any]:
    """Closed form, or gradient steps with the epoch picked on validation Recall@max(k) (then, with
    recommend.refit, ``rebuild()``'s fresh model trained that many epochs on train + validation)."""
    t0 = time.perf_counter()
    if not model.trained:
        model.fit(prepared.train)
        return {"fit_seconds": round(time.perf_counter() - t0, 3)}
    import torch

    from danlu.recommend.fit import fit_bpr

    cfg, tr = config_of(recipe), recipe.train
    kmax = max(cfg.k)
    counts = prepared.train_counts()
    has_val = prepared.val.nnz > 0

    def validate() -> float:
        if not has_val:
            return 0.0
        m, _ = evaluate_ranking(lambda us: model.score(us, prepared.train[us]), prepared.train, prepared.val,
                                [kmax], counts)
        return m[f"recall@{kmax}"]

    o = recipe.model.options
    loss_name = o.get("loss") if o.get("loss") in ("bpr", "softmax") else "bpr"
    info = fit_bpr(model, prepared.train, epochs=int(tr.epoch_count), batch_size=tr.batch_size, lr=tr.lr,
                   reg=o.get("reg", 0.0), negatives=o.get("negatives", 1), optimizer=tr.optimizer,
                   weight_decay=tr.weight_decay, seed=recipe.seed, validate=validate,
                   patience=tr.early_stop.patience if tr.early_stop else 5, say=say, loss_name=loss_name)
    info["monitor"] = f"val recall@{kmax}"
    info["fit_seconds"] = info.pop("seconds")
    if cfg.refit and has_val and info["best_epoch"] > 0 and rebuild is not None:
        t1 = time.perf_counter()
        torch.manual_seed(recipe.seed)
        fresh = rebuild()
        fit_bpr(fresh, prepared.known_at_test, epochs=info["best_epoch"], batch_size=tr.batch_size, lr=tr.lr,
                reg=o.get("reg", 0.0), negatives=o.get("negatives", 1), optimizer=tr.optimizer,
                weight_decay=tr.weight_decay, seed=recipe.seed, validate=None, say=lambda *_: None,
                loss_name=loss_name)
        model.load_state_dict(fresh.state_dict())
        info["refit"] = {"on": "train + validation", "epochs": info["best_epoch"],
                         "seconds": round(time.perf_counter() - t1, 2)}
    return info


@dataclass
class Trained:
    """What ``danlu.api.train`` turns into its TrainResult."""

    run: Path
    metrics: dict[str, Any]
    wall_s: float
    report: dict[str, Any]


def train_recommender(recipe: Recipe, *, runs_dir: Path | None = None, data_dir: Path | None = None,
                      run_dir: Path | None = None, progress: bool = True, plots: bool = True) -> Trained:
    """Check, fit, evaluate and write the run folder (through the shared run lifecycle)."""
    import torch

    from danlu.recommend import store
    from danlu.recommend.build import build, side_features, with_features
    from danlu.runs.lifecycle import finish_run, phase

    t0 = time.perf_counter()
    check_recipe(recipe)
    cfg = config_of(recipe)
    say = print if progress else (lambda *_: None)
    torch.manual_seed(recipe.seed)
    if recipe.train.threads:
        torch.set_num_threads(recipe.train.threads)
    data = load_interactions(recipe, data_dir)
    if cfg.task == "rating":
        from danlu.recommend.rating import train_rating

        run, metrics, report = train_rating(recipe, data, runs_dir=runs_dir, run_dir=run_dir, say=say)
        return Trained(run, metrics, time.perf_counter() - t0, report)
    prepared = prepare_ranking(data, cfg, recipe.seed)
    features = None
    if recipe.model.name == "two_tower":
        features = side_features(data.item_info, recipe.model.options.get("title_tokens", 5000))
    def rebuild() -> Any:
        return with_features(build(recipe, data.n_users, data.n_items, features), features, data.item_info,
                             data.n_items)

    model = rebuild()
    run = store.start(recipe, data, {"task": "ranking", "model": recipe.model.name, "features": features,
                                     "explains": bool(model.explains)}, runs_dir, run_dir)
    for note in prepared.notes:
        say(f"note: {note}")
    say(f"run: {run.path}")
    say(f"data: {data.source}  users {data.n_users}  items {data.n_items}  train {prepared.train.nnz}  "
        f"val {prepared.val.nnz}  test {prepared.test.nnz}")
    with phase(run, "training"):
        fit_info = fit_model(recipe, model, prepared, say, rebuild)
        store.save_weights(run.path, model, recipe, prepared.known_at_test)
    done = {k: v for k, v in fit_info.items() if k != "history"}
    run.set_status("evaluating", **done)
    with phase(run, "evaluation", **done):
        report = ranking_report(recipe, model, prepared, fit_info, run, plots)
    finish_run(run, "done", **done)
    return Trained(run.path, report["metrics"], time.perf_counter() - t0, report)


def ranking_report(recipe: Recipe, model: Any, prepared: Prepared, fit_info: dict[str, Any], folder: Any,
                   plots: bool) -> dict[str, Any]:
    """Test metrics of the model and of popularity on the same split, report.json/.md and the plots."""
    from danlu.models.recommenders import Popularity

    cfg = config_of(recipe)
    known = prepared.known_at_test
    counts = prepared.train_counts()
    t = time.perf_counter()
    metrics, extra = evaluate_ranking(lambda us: model.score(us, known[us]), known, prepared.test, cfg.k, counts)
    eval_s = time.perf_counter() - t
    pop = Popularity(prepared.data.n_users, prepared.data.n_items)
    pop.fit(prepared.train)
    pop_metrics, pop_extra = evaluate_ranking(lambda us: pop.score(us, known[us]), known, prepared.test, cfg.k,
                                              counts)
    name = recipe.model.name
    report = {
        "task": "recommendation", "model": name, "source": prepared.data.source,
        "protocol": {"split": cfg.split, "description": prepared.split.description, "implicit": cfg.implicit,
                     "fit_on": "train + validation (epochs picked on validation)" if "refit" in fit_info
                     else "train", "epoch_picked_on": "validation" if model.trained else None,
                     "test_history": "train + validation items (masked from the ranking)",
                     "ranking": "full catalogue, no sampled negatives",
                     "leaks_future": cfg.split == "random"},
        "definitions": DEFINITIONS,
        "sizes": {"users": prepared.data.n_users, "items": prepared.data.n_items, "train": int(prepared.train.nnz),
                  "val": int(prepared.val.nnz), "test": int(prepared.test.nnz)},
        "metrics": {**_clean(metrics), "fit_seconds": fit_info.get("fit_seconds"), "eval_seconds": round(eval_s, 3)},
        "popularity": _clean(pop_metrics),
        "training": {k: v for k, v in fit_info.items()},
        "notes": prepared.notes,
    }
    if cfg.split == "random":
        report["notes"] = [*report["notes"], "random split: training holds interactions made after test ones, "
                                             "so these numbers leak the future and read high"]
    folder.write_report("report", report, report_markdown(report, cfg.k))
    run = folder.path
    if plots:
        from danlu.recommend import plots as figures

        (run / "plots").mkdir(exist_ok=True)
        curves = {name: extra["recall_curve"]} if name == "popularity" else {
            name: extra["recall_curve"], "popularity": pop_extra["recall_curve"]}
        figures.recall_curve(curves, run / "plots" / "recall_at_k.png")
        kmax = max(cfg.k)
        tops = {name: extra["top"][:, :kmax]} if name == "popularity" else {
            name: extra["top"][:, :kmax], "popularity": pop_extra["top"][:, :kmax]}
        figures.recommended_popularity(counts, tops, run / "plots" / "recommended_popularity.png")
    return report


def _clean(m: dict[str, Any]) -> dict[str, Any]:
    return {k: (round(float(v), 5) if isinstance(v, float) else v) for k, v in m.items()}


def report_markdown(report: dict[str, Any], ks: list[int]) -> str:
    p = report["protocol"]
    cols = [f"{m}@{k}" for k in ks for m in ("recall", "ndcg", "hr")] + ["mrr"] + [
        f"{m}@{max(ks)}" for m in ("coverage", "pop_share")]
    lines = [f"# {report['model']} on {report['source']}", "",
             f"Protocol: {p['description']}. Implicit positives: {p['implicit']}. Ranking over the "
             f"{p['ranking']}; each user's {p['test_history']}.", ""]
    if p["leaks_future"]:
        lines += ["**Random split: leaks the future; these numbers are optimistic.**", ""]
    lines += ["| model | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    rows = [(report["model"], report["metrics"])]
    if report["model"] != "popularity":
        rows.append(("popularity", report["popularity"]))
    for name, m in rows:
        lines.append(f"| {name} | " + " | ".join(f"{m[c]:.4f}" for c in cols) + " |")
    s = report["sizes"]
    lines += ["", f"Users {s['users']}, items {s['items']}; positives train {s['train']}, val {s['val']}, "
                  f"test {s['test']}; {report['metrics']['users']} users scored.",
              f"Fit {report['metrics']['fit_seconds']} s" + (f", best epoch {report['training']['best_epoch']} "
                                                            f"({report['training']['seconds_to_best']} s)"
                                                            if "best_epoch" in report["training"] else "") + ".",
              "", "Definitions:"]
    lines += [f"- {k}: {v}" for k, v in report["definitions"].items()]
    if report["notes"]:
        lines += ["", "Notes:"] + [f"- {n}" for n in report["notes"]]
    return "\n".join(lines) + "\n"


