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


def fit_model(recipe: Recipe, model: Any, prepared: Prepared, say: Any, rebuild: Any = None, hooks: Any = None,
              folder: Any = None, resume: bool = False, shard: Any = None) -> dict[str, Any]:
    """Closed form, or gradient steps with the epoch picked on the validation monitor (train.monitor, by
    default Recall@max(k)); then, with recommend.refit, ``rebuild()``'s fresh model trained that many epochs
    on train + validation. ``hooks`` sees each epoch's validation row (one row for a closed-form fit);
    ``folder`` keeps MF / two-tower's per-epoch checkpoints, and ``resume`` continues from them; ``shard``
    trains this process's share of each batch of a --nproc run (recommend/distributed.py)."""
    from danlu.recommend.hooks import monitor

    cfg = config_of(recipe)
    counts = prepared.train_counts()
    has_val = prepared.val.nnz > 0
    name = monitor(recipe)

    def validate() -> dict[str, float]:
        if not has_val:
            return {name: 0.0}
        m, _ = evaluate_ranking(lambda us: model.score(us, prepared.train[us]), prepared.train, prepared.val,
                                cfg.k, counts)
        return {f"val_{k}": float(v) for k, v in m.items() if not k.startswith(("coverage", "pop_share", "users"))}

    t0 = time.perf_counter()
    if not model.trained:
        model.fit(prepared.train)
        info: dict[str, Any] = {"fit_seconds": round(time.perf_counter() - t0, 3)}
        if hooks is not None and has_val:  # one row: what a search scores; nothing to prune
            val = validate()
            info["monitor"], info["best_val"] = name, val[name]
            hooks({"epoch": 1, **val, "seconds": info["fit_seconds"]})
        return info
    import torch

    from danlu.recommend.checkpoint import REFIT, SELECT
    from danlu.recommend.fit import fit_bpr

    tr = recipe.train
    o = recipe.model.options
    if o.get("loss") == "ials":
        return _fit_ials(recipe, model, prepared, validate, name, say, rebuild, hooks, shard)
    loss_name = o.get("loss") if o.get("loss") in ("bpr", "softmax") else "bpr"
    common = {"batch_size": tr.batch_size, "lr": tr.lr, "reg": o.get("reg", 0.0), "negatives": o.get("negatives", 1),
              "optimizer": tr.optimizer, "weight_decay": tr.weight_decay, "seed": recipe.seed, "loss_name": loss_name,
              "resume": resume, "shard": shard}
    info = fit_bpr(model, prepared.train, epochs=int(tr.epoch_count), validate=validate, monitor=name,
                   patience=tr.early_stop.patience if tr.early_stop else 5, say=say, on_epoch=hooks,
                   state_path=folder / SELECT if folder is not None else None, **common)
    info["monitor"] = name
    info["fit_seconds"] = info.pop("seconds")
    if pruned(hooks):
        return info
    if cfg.refit and has_val and info["best_epoch"] > 0 and rebuild is not None:
        t1 = time.perf_counter()
        torch.manual_seed(recipe.seed)
        fresh = rebuild()
        fit_bpr(fresh, prepared.known_at_test, epochs=info["best_epoch"], validate=None, say=lambda *_: None,
                state_path=folder / REFIT if folder is not None else None, **common)
        model.load_state_dict(fresh.state_dict())
        info["refit"] = {"on": "train + validation", "epochs": info["best_epoch"],
                         "seconds": round(time.perf_counter() - t1, 2)}
    return info


def _fit_ials(recipe: Recipe, model: Any, prepared: Prepared, validate: Any, name: str, say: Any, rebuild: Any,
              hooks: Any, shard: Any) -> dict[str, Any]:
    """MF by alternating least squares (danlu/recommend/ials.py): each epoch is two closed-form solves, so
    there is no per-epoch checkpoint (a resumed run fits again, deterministically) and no --nproc split."""
    import time as clock

    import torch

    from danlu.recommend.ials import fit_ials

    if shard is not None:
        raise RecipeError("model.loss=ials fits in closed form in one process; --nproc splits gradient steps",
                          hint="drop --nproc, or use model.loss=softmax / bpr")
    o, tr = recipe.model.options, recipe.train
    common = {"alpha": o.get("alpha", 0.01), "reg": o.get("reg", 0.0), "nu": o.get("nu", 1.0), "seed": recipe.seed}
    towers = hasattr(model, "side_vectors")  # two-tower: iALS fits the ids, then the features map onto them
    if towers:
        from danlu.recommend.feature_map import clear_side, map_features

        if "id" not in model.features:
            raise RecipeError("model.loss=ials fits the items' id vectors, but model.features has no 'id'",
                              hint="add id to model.features, or use model.loss=softmax / bpr")
        clear_side(model)
        mapping = {"steps": int(o.get("map_steps", 300)), "lr": float(o.get("map_lr", 0.01)),
                   "weight_decay": float(o.get("map_weight_decay", 0.003)), "seed": recipe.seed}
    info = fit_ials(model, prepared.train, epochs=int(tr.epoch_count), validate=validate if prepared.val.nnz else None,
                    monitor=name, patience=tr.early_stop.patience if tr.early_stop else 5, say=say, on_epoch=hooks,
                    **common)
    info["monitor"] = name
    info["fit_seconds"] = info.pop("seconds")
    if pruned(hooks):
        return info
    refit = config_of(recipe).refit and prepared.val.nnz > 0 and info["best_epoch"] > 0 and rebuild is not None
    if towers and not refit:
        info["feature_map"] = map_features(model, _seen(prepared.train), **mapping)
        say(f"features -> item vectors: loss {info['feature_map']['first_loss']:.4f} -> "
            f"{info['feature_map']['loss']:.4f} (zero vectors: {info['feature_map']['zero_loss']:.4f})")
    if refit:
        t1 = clock.perf_counter()
        torch.manual_seed(recipe.seed)
        fresh = rebuild()
        if towers:
            clear_side(fresh)
        fit_ials(fresh, prepared.known_at_test, epochs=info["best_epoch"], validate=None, say=lambda *_: None,
                 **common)
        if towers:
            info["feature_map"] = map_features(fresh, _seen(prepared.known_at_test), **mapping)
            say(f"features -> item vectors: loss {info['feature_map']['first_loss']:.4f} -> "
                f"{info['feature_map']['loss']:.4f} (zero vectors: {info['feature_map']['zero_loss']:.4f})")
        model.load_state_dict(fresh.state_dict())
        info["refit"] = {"on": "train + validation", "epochs": info["best_epoch"],
                         "seconds": round(clock.perf_counter() - t1, 2)}
    return info


def _seen(x: Any) -> Any:
    """Items with at least one interaction in ``x`` (a bool tensor)."""
    import numpy as np
    import torch

    return torch.from_numpy(np.asarray((x > 0).sum(0)).ravel() > 0)


def checked_objective(recipe: Recipe, metric: str | None, data_dir: Any) -> str:
    """What a search over this recipe scores (checked), after reading its table once (a bad path or column
    fails before the study folder exists)."""
    from danlu.recommend.hooks import monitor

    check_recipe(recipe)
    name = monitor(recipe, metric)
    load_interactions(recipe, data_dir)
    return name


def pruned(hooks: Any) -> bool:
    """A callback (a search's pruner) stopped the fit and wants no test evaluation."""
    return hooks is not None and getattr(hooks, "stop", None) is not None and hooks.stop.status == "pruned"


@dataclass
class Trained:
    """What ``danlu.api.train`` turns into its TrainResult."""

    run: Path
    metrics: dict[str, Any]
    wall_s: float
    report: dict[str, Any]
    status: str = "done"  # or "pruned" (a search stopped it: no test metrics)
    writer: bool = True  # False in the other processes of a --nproc run: process 0 wrote and prints the run


def train_recommender(recipe: Recipe, *, runs_dir: Path | None = None, data_dir: Path | None = None,
                      run_dir: Path | None = None, progress: bool = True, plots: bool = True,
                      callbacks: list[Any] = (), resume: Path | None = None, resumable: bool = True) -> Trained:
    """Check, fit, evaluate and write the run folder (through the shared run lifecycle).

    ``callbacks`` see each epoch's validation row (a search prunes through them: the run ends "pruned");
    ``resume`` continues the run in that folder: MF / two-tower from their last per-epoch checkpoint,
    closed-form models and rating runs by fitting again (deterministic with the run's seed), so the result
    equals an uninterrupted run's. ``resumable=False`` keeps no checkpoints (a search's trials)."""
    import torch

    from danlu.recommend import store
    from danlu.recommend.build import build, side_features, with_features
    from danlu.recommend.hooks import EpochHooks, monitor
    from danlu.runs.lifecycle import finish_run, phase

    t0 = time.perf_counter()
    check_recipe(recipe)
    monitor(recipe)  # a train.monitor the run never logs is refused before any file is written
    from danlu.recommend.distributed import join

    group = join(recipe)  # --nproc / torchrun: one of several processes (None in one process)
    cfg = config_of(recipe)
    say = print if progress else (lambda *_: None)
    torch.manual_seed(recipe.seed)
    if recipe.train.threads:
        torch.set_num_threads(recipe.train.threads)
    data = load_interactions(recipe, data_dir)
    if cfg.task == "rating":
        from danlu.recommend.rating import train_rating

        run, metrics, report, status = train_rating(recipe, data, runs_dir=runs_dir, run_dir=run_dir, say=say,
                                                    callbacks=callbacks, resume=resume)
        return Trained(run, metrics, time.perf_counter() - t0, report, status)
    prepared = prepare_ranking(data, cfg, recipe.seed)
    features = None
    if recipe.model.name == "two_tower":
        features = side_features(data.item_info, recipe.model.options.get("title_tokens", 5000))
    def rebuild() -> Any:
        return with_features(build(recipe, data.n_users, data.n_items, features), features, data.item_info,
                             data.n_items)

    model = rebuild()
    schema = {"task": "ranking", "model": recipe.model.name, "features": features, "explains": bool(model.explains)}
    def create() -> Any:
        return store.reopen(resume, data, schema) if resume is not None else store.start(recipe, data, schema,
                                                                                         runs_dir, run_dir)

    run = create() if group is None else group.open_run(create)  # process 0 writes; the others read its path
    shard = None
    if group is not None:
        from danlu.recommend.distributed import Shard

        shard = Shard(group.rank, group.size)
        if not group.writer:
            say = lambda *_: None  # noqa: E731 - process 0 prints
    with run.lock():
        for note in prepared.notes:
            say(f"note: {note}")
        say(f"run: {run.path}")
        say(f"data: {data.source}  users {data.n_users}  items {data.n_items}  train {prepared.train.nnz}  "
            f"val {prepared.val.nnz}  test {prepared.test.nnz}")
        hooks = EpochHooks(run, callbacks, int(recipe.train.epoch_count) if model.trained else 1)
        if resume is not None:  # metrics.jsonl as far as the checkpoint goes; the fit appends the rest
            from danlu.recommend.checkpoint import SELECT, saved_history

            run.rewrite_metrics(saved_history(run.path / SELECT) if model.trained else [])
        with phase(run, "training"):
            fit_info = fit_model(recipe, model, prepared, say, rebuild, hooks, run.path if resumable else None,
                                 resume=resume is not None, shard=shard)
            if shard is not None:
                fit_info["distributed"] = shard.describe(group)
                group.close()
                if not group.writer:  # process 0 saves, scores and writes the report
                    return Trained(run.path, {}, time.perf_counter() - t0, {}, writer=False)
            if not pruned(hooks):
                store.save_weights(run.path, model, recipe, prepared.known_at_test)
        done = {k: v for k, v in fit_info.items() if k not in ("history", "stopped")}
        if hooks.stop is not None:
            done["stopped"] = hooks.stop.reason
        if pruned(hooks):
            finish_run(run, "pruned", **done)
            return Trained(run.path, {}, time.perf_counter() - t0, {}, "pruned")
        run.set_status("evaluating", **done)
        if hasattr(model, "set_graph"):  # LightGCN at test time: the graph of everything known before test
            model.set_graph(prepared.known_at_test)
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


