"""The recommendation side of ``danlu predict``: --user, --items, --exclude (argparse only at import)."""

from __future__ import annotations

import argparse
import json


def add_predict_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--user", help="recommendation runs: top-k for this user id")
    parser.add_argument("--items", help="recommendation runs: top-k for a new user who liked these item ids "
                        "(comma-separated)")
    parser.add_argument("--exclude", default="", help="recommendation runs: item ids never to recommend")


def _ids(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def predict_if_recommendation(a: argparse.Namespace) -> bool:
    """Answer ``danlu predict`` for a recommendation run; False when the run is of another kind."""
    from danlu.errors import DanluError
    from danlu.recommend import is_recommendation_run
    from danlu.runs.store import resolve_run

    asked = a.user is not None or a.items is not None
    run = resolve_run(a.run, a.runs_dir)
    if not is_recommendation_run(run):
        if asked:
            raise DanluError(f"--user and --items are for recommendation runs; {run.name} is not one",
                             hint="give images, texts or CSV rows to predict with this run")
        return False
    if not asked or a.inputs:
        raise DanluError(f"{run.name} is a recommendation run: ask for a user or a few items",
                         hint=f"danlu predict {a.run} --user 42, or --items 1,2,3 (a new user)")
    from danlu.recommend.predict import RecommenderRun, render

    items = _ids(a.items) if a.items is not None else None
    result = RecommenderRun(run).recommend(user=a.user, items=items, k=a.top_k, exclude=_ids(a.exclude))
    if a.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        print(render(result))
    return True
