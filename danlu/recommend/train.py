"""`danlu train` for recommendation recipes: interactions → split → fit → full-catalogue report → run folder.

Protocol: models are fit on the training part; the validation part picks the epoch (MF, two-tower); the
test metrics then score each user from everything known before test (train + validation), masking those
items. Popularity is fit and scored the same way and reported beside every model.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

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


def build(recipe: Recipe, prepared: Prepared | None, n_users: int, n_items: int, features: dict | None = None) -> Any:
    """The recipe's model, fresh; MF's loss "auto" becomes bpr (ranking) or mse (ratings)."""
    from danlu.models.recommenders import build_recommender

    options = dict(recipe.model.options)
    name = recipe.model.name
    for key in ("reg", "negatives", "title_tokens"):
        options.pop(key, None)
    if name == "mf":
        options["loss"] = "mse" if config_of(recipe).task == "rating" else (
            "bpr" if options["loss"] == "auto" else options["loss"])
    extra = {}
    if name == "two_tower":
        f = features or {}
        extra = {"n_genres": len(f.get("genres", [])) + 1, "n_years": len(f.get("years", [])) + 1,
                 "n_tokens": len(f.get("tokens", [])) + 1}
    return build_recommender(name, options, n_users, n_items, **extra)


def fit_model(recipe: Recipe, model: Any, prepared: Prepared, say: Any) -> dict[str, Any]:
    """Closed form, or gradient steps with the epoch picked on validation Recall@max(k)."""
    t0 = time.perf_counter()
    if not model.trained:
        model.fit(prepared.train)
        return {"fit_seconds": round(time.perf_counter() - t0, 3)}
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
    info = fit_bpr(model, prepared.train, epochs=int(tr.epoch_count), batch_size=tr.batch_size, lr=tr.lr,
                   reg=o.get("reg", 0.0), negatives=o.get("negatives", 1), optimizer=tr.optimizer,
                   weight_decay=tr.weight_decay, seed=recipe.seed, validate=validate,
                   patience=tr.early_stop.patience if tr.early_stop else 5, say=say,
                   loss_name=o.get("loss") if o.get("loss") in ("bpr", "softmax") else "bpr")
    info["monitor"] = f"val recall@{kmax}"
    info["fit_seconds"] = info.pop("seconds")
    return info


def side_features(data: Any, options: dict[str, Any]) -> dict[str, Any]:
    """Vocabularies of genres, years and title tokens (title tokens through danlu's tokenizers)."""
    from collections import Counter

    from danlu.text.tokenizers import make_tokenizer

    info = data.item_info
    genres = sorted({g for gs in info.get("genres", []) for g in gs})
    years = sorted({y for y in info.get("year", []) if y is not None})
    titles = info.get("title", [])
    tok_name = make_tokenizer("auto", titles or ["x"]).name if titles else "word"
    tok = make_tokenizer(tok_name)
    counts = Counter(t for title in titles for t in tok.tokenize(title) if t.strip() and t.isalnum() or len(t) > 1)
    tokens = [t for t, _ in counts.most_common(options.get("title_tokens", 5000))]
    return {"genres": genres, "years": years, "tokens": tokens, "tokenizer": tok_name}


Bags = tuple[np.ndarray, np.ndarray]


def encode_items(features: dict[str, Any], titles: list[str], genres: list[list[str]],
                 years: list[int | None]) -> tuple[Bags, np.ndarray, Bags]:
    """Items' side features as EmbeddingBag (index, offset) pairs and year indices; 0 is "unknown"."""
    from danlu.text.tokenizers import make_tokenizer

    tok = make_tokenizer(features["tokenizer"])
    g_index = {g: i + 1 for i, g in enumerate(features["genres"])}
    y_index = {y: i + 1 for i, y in enumerate(features["years"])}
    t_index = {t: i + 1 for i, t in enumerate(features["tokens"])}

    def bags(lists: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        lists = [x or [0] for x in lists]
        offsets = np.cumsum([0] + [len(x) for x in lists[:-1]])
        return np.asarray([i for x in lists for i in x], dtype=np.int64), offsets.astype(np.int64)

    g = bags([[g_index[x] for x in gs if x in g_index] for gs in genres])
    t = bags([[t_index[x] for x in tok.tokenize(title) if x in t_index] for title in titles])
    y = np.asarray([y_index.get(v, 0) for v in years], dtype=np.int64)
    return g, y, t


def train_recommender(recipe: Recipe, *, runs_dir: Path | None = None, data_dir: Path | None = None,
                      run_dir: Path | None = None, progress: bool = True, plots: bool = True) -> Any:
    """Train, evaluate and write the run folder; returns danlu.api.TrainResult."""
    import torch

    from danlu.api import TrainResult

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

        return train_rating(recipe, data, runs_dir=runs_dir, run_dir=run_dir, say=say, t0=t0)
    prepared = prepare_ranking(data, cfg, recipe.seed)
    features = side_features(data, recipe.model.options) if recipe.model.name == "two_tower" else None
    model = build(recipe, prepared, data.n_users, data.n_items, features)
    if features is not None:
        info = data.item_info
        n = data.n_items
        model.set_features(*encode_items(features, info.get("title", [""] * n), info.get("genres", [[]] * n),
                                         info.get("year", [None] * n)))
    folder = create_folder(recipe, data, {"task": "ranking", "model": recipe.model.name, "features": features,
                                          "explains": bool(model.explains)}, runs_dir, run_dir)
    folder.set_status("training", epoch=0, epochs=recipe.train.epoch_count)
    for note in prepared.notes:
        say(f"note: {note}")
    say(f"run: {folder.path}")
    say(f"data: {data.source}  users {data.n_users}  items {data.n_items}  train {prepared.train.nnz}  "
        f"val {prepared.val.nnz}  test {prepared.test.nnz}")
    try:
        fit_info = fit_model(recipe, model, prepared, say)
        save_weights(folder.path, model, recipe, prepared.known_at_test)
        folder.set_status("evaluating", **{k: v for k, v in fit_info.items() if k != "history"})
        report = ranking_report(recipe, model, prepared, fit_info, folder.path, plots)
    except BaseException as e:
        folder.set_status("interrupted" if isinstance(e, KeyboardInterrupt) else "failed", error=str(e)[:500])
        raise
    folder.set_status("done", **{k: v for k, v in fit_info.items() if k != "history"})
    return TrainResult(folder.path, report["metrics"], time.perf_counter() - t0, report)


def create_folder(recipe: Recipe, data: Any, schema: dict[str, Any], runs_dir: Path | None,
                  run_dir: Path | None) -> Any:
    """The run folder with what a run starts with: recipe.yaml, schema.json, id_maps.json, items.json."""
    from danlu.run_folder import RunFolder
    from danlu.runs import atomic_write_text, write_json

    folder = RunFolder(Path(run_dir)) if run_dir is not None else RunFolder.create(recipe.name, runs_dir)
    folder.path.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder.path / "recipe.yaml", recipe.to_yaml())
    write_json(folder.path / "schema.json", {"kind": "interactions", **schema, "n_users": data.n_users,
                                             "n_items": data.n_items, "source": data.source})
    atomic_write_text(folder.path / "id_maps.json", data.id_maps_json())
    write_json(folder.path / "items.json", dict(data.item_info))
    return folder


def save_weights(run: Path, model: Any, recipe: Recipe, known: sp.csr_matrix) -> None:
    """model.safetensors, and history.safetensors: each user's known items (masked when recommending)."""
    import torch

    from danlu.runs import save_tensors

    save_tensors(run / "history.safetensors", {"indptr": torch.from_numpy(known.indptr.astype(np.int64)),
                                               "indices": torch.from_numpy(known.indices.astype(np.int64))})
    save_tensors(run / "model.safetensors", dict(model.state_dict()),
                 metadata={"danlu": json.dumps({"model": recipe.model.name, "task": "recommendation"})})


def ranking_report(recipe: Recipe, model: Any, prepared: Prepared, fit_info: dict[str, Any], run: Path,
                   plots: bool) -> dict[str, Any]:
    from danlu.models.recommenders import Popularity
    from danlu.run_folder import RunFolder

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
                     "fit_on": "train", "epoch_picked_on": "validation" if model.trained else None,
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
    RunFolder(run).write_report("report", report, report_markdown(report, cfg.k))
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


def load_history(run: Path) -> sp.csr_matrix:
    from safetensors.numpy import load_file

    t = load_file(str(run / "history.safetensors"))
    n_users = len(t["indptr"]) - 1
    schema = json.loads((run / "schema.json").read_text(encoding="utf-8"))
    return sp.csr_matrix((np.ones(len(t["indices"]), dtype=np.float32), t["indices"], t["indptr"]),
                         shape=(n_users, schema["n_items"]))
