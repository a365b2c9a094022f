"""`danlu evaluate RUN` for a recommendation run: its weights scored again on the run's own split.

The data is read and split again with the run's recipe and seed; it must be the table the run was trained on
(same users and items, and on test the same history the run saved), else the numbers would describe another
split. Test scores each user from train + validation items (masked), as training's report did; val scores
from the training items alone, beside popularity fit on the training part in both cases.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from danlu.errors import DanluError, RunError


def report_file(split: str, ks: list[int], recipe_ks: list[int]) -> str:
    """report (test, the recipe's k), report-val, and a -k suffix for other cut-offs (report-k5-50)."""
    name = "report" if split == "test" else f"report-{split}"
    return name if ks == recipe_ks else f"{name}-k{'-'.join(map(str, ks))}"


def parse_ks(text: str | None) -> list[int] | None:
    """``--k 10,20`` → [10, 20]; None keeps the recipe's recommend.k."""
    if text is None:
        return None
    try:
        ks = sorted({int(x) for x in str(text).split(",") if x.strip()})
    except ValueError:
        raise DanluError(f"--k takes cut-offs separated by commas, got {text!r}", hint="e.g. --k 10,20") from None
    if not ks or ks[0] < 1:
        raise DanluError(f"--k needs cut-offs of at least 1, got {text!r}", hint="e.g. --k 10,20")
    return ks


def evaluate_run(run_dir: Path, split: str = "test", ks: list[int] | None = None,
                 data_dir: Path | None = None, plots: bool = True) -> dict[str, Any]:
    """Ranking metrics of the run and of popularity on ``split``; writes report[-split][-kK].json/.md."""
    from danlu.models.recommenders import Popularity
    from danlu.recommend.data import config_of, load_interactions, prepare_ranking
    from danlu.recommend.metrics import DEFINITIONS, evaluate_ranking
    from danlu.recommend.predict import RecommenderRun
    from danlu.recommend.train import report_markdown
    from danlu.runs.files import read_json_file
    from danlu.runs.folder import RunFolder

    run_dir = Path(run_dir)
    folder = RunFolder(run_dir)
    if _task(run_dir) == "rating":
        raise DanluError(f"{run_dir} is a rating-prediction run: it was scored by k-fold cross-validation "
                         "over all ratings when trained (report.json), there is no held-out split to score again",
                         hint="train it again to score it anew: danlu train --resume is for unfinished runs")
    if split not in ("val", "test"):
        raise DanluError(f"a recommendation run is scored on val or test, not {split!r}: its training items are "
                         "each user's history, masked from the ranking", hint="danlu evaluate RUN --split val")
    loaded = RecommenderRun(run_dir)
    recipe = loaded.recipe
    cfg = config_of(recipe)
    ks = ks or list(cfg.k)
    data = load_interactions(recipe, data_dir)
    if list(data.user_map.ids) != list(loaded.users.ids) or list(data.item_map.ids) != list(loaded.items.ids):
        raise RunError(f"the data now has other users or items than {run_dir} was trained on "
                       f"({data.n_users} users, {data.n_items} items now; {len(loaded.users)} and "
                       f"{len(loaded.items)} then)", hint="evaluate on the data the run was trained on")
    prepared = prepare_ranking(data, cfg, recipe.seed)
    known = prepared.known_at_test
    if (known != loaded.history).nnz:
        raise RunError(f"the data's train + validation items differ from the history {run_dir} saved",
                       hint="the table changed since training; evaluate on the data the run was trained on")
    history, target = (known, prepared.test) if split == "test" else (prepared.train, prepared.val)
    if hasattr(loaded.model, "set_graph"):  # LightGCN propagates over what each user is scored from
        loaded.model.set_graph(history)
    if target.nnz == 0:
        raise DanluError(f"the {split} split of this run's data is empty",
                         hint="evaluate test" + ("; train with recommend.val_fraction > 0 for a val split"
                                                 if split == "val" else ""))
    counts = prepared.train_counts()
    model = loaded.model
    t = time.perf_counter()
    metrics, extra = evaluate_ranking(lambda us: model.score(us, history[us]), history, target, ks, counts)
    eval_s = round(time.perf_counter() - t, 3)
    pop = Popularity(data.n_users, data.n_items)
    pop.fit(prepared.train)
    pop_metrics, pop_extra = evaluate_ranking(lambda us: pop.score(us, history[us]), history, target, ks, counts)
    trained = read_json_file(run_dir / "report.json", within=run_dir) if (run_dir / "report.json").is_file() else {}
    training = trained.get("training", {}) if isinstance(trained, dict) else {}
    notes = list(prepared.notes)
    if split == "val":
        notes.append("val: each user is scored from the training items alone (masked), against the validation items")
        if "refit" in training:
            notes.append("this model was refit on train + validation after the epoch was picked, so it has seen "
                         "the validation items: these val numbers read high")
    name = recipe.model.name
    report = {
        "task": "recommendation", "model": name, "source": data.source, "split": split,
        "protocol": {"split": cfg.split, "description": prepared.split.description, "implicit": cfg.implicit,
                     "fit_on": trained.get("protocol", {}).get("fit_on", "train"),
                     "test_history": ("train + validation items" if split == "test" else "training items")
                     + " (masked from the ranking)",
                     "ranking": "full catalogue, no sampled negatives", "leaks_future": cfg.split == "random"},
        "definitions": DEFINITIONS,
        "sizes": {"users": data.n_users, "items": data.n_items, "train": int(prepared.train.nnz),
                  "val": int(prepared.val.nnz), "test": int(prepared.test.nnz)},
        "metrics": {**_rounded(metrics), "fit_seconds": trained.get("metrics", {}).get("fit_seconds"),
                    "eval_seconds": eval_s},
        "popularity": _rounded(pop_metrics), "training": training, "notes": notes, "run": str(run_dir),
    }
    base = report_file(split, ks, list(cfg.k))
    markdown = report_markdown(report, ks).replace(f" on {data.source}\n", f" on {data.source}: {split} split\n", 1)
    folder.write_report(base, report, markdown)
    if plots:
        _draw(run_dir, base, name, ks, counts, extra, pop_extra)
    status = folder.status()
    if split == "test" and status.get("status") == "failed" and status.get("failed_in") == "evaluation":
        folder.update_status("done")  # training's last step, done now
    return {**report, "report_name": base}


def _task(run_dir: Path) -> str | None:
    from danlu.runs.files import read_json_file

    schema = read_json_file(run_dir / "schema.json", within=run_dir)
    return schema.get("task") if isinstance(schema, dict) else None


def _rounded(m: dict[str, Any]) -> dict[str, Any]:
    return {k: (round(float(v), 5) if isinstance(v, float) else v) for k, v in m.items()}


def _draw(run_dir: Path, base: str, name: str, ks: list[int], counts: np.ndarray, extra: dict, pop: dict) -> None:
    """The training report's two figures for this split (plots/recall_at_k[-val].png, ...)."""
    from danlu.recommend import plots as figures

    suffix = base.removeprefix("report")
    (run_dir / "plots").mkdir(exist_ok=True)
    curves = {name: extra["recall_curve"]} if name == "popularity" else {
        name: extra["recall_curve"], "popularity": pop["recall_curve"]}
    figures.recall_curve(curves, run_dir / "plots" / f"recall_at_k{suffix}.png")
    kmax = max(ks)
    tops = {name: extra["top"][:, :kmax]} if name == "popularity" else {
        name: extra["top"][:, :kmax], "popularity": pop["top"][:, :kmax]}
    figures.recommended_popularity(counts, tops, run_dir / "plots" / f"recommended_popularity{suffix}.png")
