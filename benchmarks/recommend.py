"""danlu's recommenders against the `implicit` library's BPR and ALS on the same MovieLens split.

Protocol (danlu/recommend): per-user temporal split (last 20 % test, 10 % before it validation), implicit =
all ratings, full-catalogue ranking, each user's train + validation items masked and used as history.
danlu's rows come from `danlu train RECIPE` (the whole run: fit + report); implicit's models are fit on the
same training matrix, their settings picked on validation Recall@20 from a small grid, and scored by the
same metric code. Times are fit times (danlu: to the best epoch for MF / two-tower, as the report gives it).

    DANLU_DATA=../shared/datasets python benchmarks/recommend.py [--skip-ratings] [--only ease,bpr]
    DANLU_DATA=../shared/datasets python benchmarks/recommend.py --serve ease,bpr [--clients 1,32]

--serve trains the named models, starts `danlu serve` on each run with micro-batching (max batch 64) and
without (max batch 1), and measures POST /v1/recommend ({"user": a known user, "k": 10}) with closed-loop
clients on keep-alive connections (benchmarks/serve.py's load generator): req/s, p50 and p99 latency and
the mean batch the server formed. MF / two-tower train 3 epochs there (serving costs the same whatever the
weights' quality).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import SHARED, matmul_gflops, print_header  # noqa: E402

RECIPES = {"popularity": "movielens-popularity", "item_knn": "movielens-itemknn", "ease": "movielens-ease",
           "bpr": "movielens-bpr", "ials": "movielens-ials", "two_tower": "movielens-twotower"}
# the movielens-bpr recipe trains MF with the softmax loss by default; "mf_bpr" is the same recipe with BPR
OVERRIDES = {"mf_bpr": ("movielens-bpr", ["model.loss=bpr", "model.negatives=4", "model.factors=128",
                                          "model.dropout=0", "model.reg=0.0001"])}
COLUMNS = ("recall@10", "ndcg@10", "recall@20", "ndcg@20", "hr@20", "mrr", "coverage@20")


def danlu_rows(names: list[str], data_dir: Path, runs: Path) -> list[dict]:
    from danlu.api import train

    rows = []
    for name in names:
        recipe, overrides = OVERRIDES.get(name, (RECIPES.get(name), []))
        result = train(recipe, overrides, runs_dir=runs, data_dir=data_dir, progress=False, plots=False)
        m, t = result.metrics, result.report.get("training", {})
        seconds = t.get("seconds_to_best", m.get("fit_seconds"))
        rows.append({"model": f"danlu {name}", **{c: m[c] for c in COLUMNS}, "fit_s": seconds,
                     "note": f"best epoch {t['best_epoch']} of {t['epochs_run']}" if "best_epoch" in t else ""})
        print(f"  danlu {name}: recall@20 {m['recall@20']:.4f}  ndcg@20 {m['ndcg@20']:.4f}  {seconds} s", flush=True)
    return rows


def implicit_rows(data_dir: Path) -> list[dict]:
    try:
        import implicit
        from implicit.cpu.als import AlternatingLeastSquares
        from implicit.cpu.bpr import BayesianPersonalizedRanking
    except ImportError as e:
        print(f"  implicit is not installed ({e}); pip install implicit")
        return []
    from danlu.recipe import load_recipe
    from danlu.recommend.data import config_of, load_interactions, prepare_ranking
    from danlu.recommend.metrics import evaluate_ranking

    recipe = load_recipe("movielens-ease")
    p = prepare_ranking(load_interactions(recipe, data_dir), config_of(recipe), recipe.seed)
    counts = p.train_counts()
    known = p.known_at_test
    train = p.train.astype(np.float32).tocsr()
    grids = {
        "ALS": [dict(factors=f, regularization=r, alpha=1.0, iterations=15) for f in (64, 128) for r in (0.01, 0.1)],
        "BPR": [dict(factors=f, learning_rate=0.01, regularization=0.01, iterations=100) for f in (64, 128)],
    }
    rows = []
    for name, grid in grids.items():
        best = None
        for params in grid:
            cls = AlternatingLeastSquares if name == "ALS" else BayesianPersonalizedRanking
            model = cls(**params, random_state=0)
            t0 = time.perf_counter()
            model.fit(train, show_progress=False)
            fit_s = time.perf_counter() - t0
            uf, itf = np.asarray(model.user_factors), np.asarray(model.item_factors)

            def score(us, uf=uf, itf=itf):
                return uf[us] @ itf.T

            val, _ = evaluate_ranking(score, p.train, p.val, [20], counts)
            if best is None or val["recall@20"] > best[0]:
                best = (val["recall@20"], params, score, fit_s)
        _, params, score, fit_s = best
        m, _ = evaluate_ranking(score, known, p.test, [10, 20], counts)
        rows.append({"model": f"implicit {name}", **{c: m[c] for c in COLUMNS}, "fit_s": round(fit_s, 2),
                     "note": json.dumps(params).replace('"', "")})
        print(f"  implicit {name} {params}: recall@20 {m['recall@20']:.4f}  ndcg@20 {m['ndcg@20']:.4f}  "
              f"{fit_s:.2f} s", flush=True)
    print(f"  (implicit {implicit.__version__})")
    return rows


def rating_rows(data_dir: Path, runs: Path) -> list[str]:
    from danlu.api import train

    r = train("movielens-mf-ratings", runs_dir=runs, data_dir=data_dir, progress=False, plots=False)
    m = r.metrics
    return [f"| user + item bias | {m['baseline_rmse']:.4f} ± {m['baseline_rmse_sd']:.4f} | "
            f"{m['baseline_mae']:.4f} |",
            f"| biased MF (danlu mf, mse) | {m['model_rmse']:.4f} ± {m['model_rmse_sd']:.4f} | {m['model_mae']:.4f} |",
            f"(5 folds, {r.wall_s:.0f} s in all)"]


def serve_rows(names: list[str], data_dir: Path, runs: Path, levels: list[int], seconds: float,
               repeat: int) -> list[tuple]:
    """(model, max batch, clients, requests, failed, req/s, p50 ms, p99 ms, mean batch): medians over rounds."""
    import asyncio
    import statistics

    import httpx

    from benchmarks.serve import Server, closed_loop, percentile
    from danlu.api import train

    out = []
    for name in names:
        quick = ["train.epochs=3", "recommend.refit=false"] if name in ("bpr", "two_tower") else []
        run = train(RECIPES[name], quick, runs_dir=runs, data_dir=data_dir, progress=False, plots=False).run
        users = json.loads((run / "id_maps.json").read_text(encoding="utf-8"))["users"]
        bodies = [json.dumps({"user": u, "k": 10}).encode() for u in users[:256]]
        samples: dict[tuple, list[tuple]] = {}
        for _ in range(repeat):
            for batch in (64, 1):
                server = Server(run, "torch", batch)
                try:
                    server.wait_ready()
                    for clients in levels:
                        before = httpx.get(server.url + "/healthz").json()
                        lat, failed, wall = asyncio.run(closed_loop(server.port, bodies, clients, 4000, seconds,
                                                                    path="/v1/recommend"))
                        after = httpx.get(server.url + "/healthz").json()
                        mean_batch = (after["requests"] - before["requests"]) / max(1, after["batches"] -
                                                                                   before["batches"])
                        sample = (len(lat), failed, len(lat) / wall, percentile(lat, 50) * 1e3,
                                  percentile(lat, 99) * 1e3, mean_batch)
                        samples.setdefault((batch, clients), []).append(sample)
                        print(f"  {name} max-batch {batch:<3} clients {clients:<3} {sample[2]:8.1f} req/s  p50 "
                              f"{sample[3]:6.1f} ms  p99 {sample[4]:6.1f} ms  mean batch {mean_batch:5.1f}  "
                              f"failed {failed}", flush=True)
                finally:
                    server.stop()
        for (batch, clients), got in samples.items():
            med = [statistics.median(v[k] for v in got) for k in range(2, 6)]
            out.append((name, batch, clients, sum(v[0] for v in got), sum(v[1] for v in got), *med))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default=",".join(RECIPES),
                    help="danlu models to run: " + ",".join([*RECIPES, *OVERRIDES]))
    ap.add_argument("--skip-implicit", action="store_true")
    ap.add_argument("--skip-ratings", action="store_true")
    ap.add_argument("--serve", help="measure POST /v1/recommend instead, for these models (e.g. ease,bpr)")
    ap.add_argument("--clients", default="1,32", help="--serve: concurrency levels")
    ap.add_argument("--seconds", type=float, default=8.0, help="--serve: longest a level runs")
    ap.add_argument("--repeat", type=int, default=2, help="--serve: interleaved rounds (medians reported)")
    a = ap.parse_args()
    data_dir = SHARED / "datasets"
    if a.serve:
        print_header("danlu serve: POST /v1/recommend, micro-batched (max batch 64) vs one request a call (1)")
        with tempfile.TemporaryDirectory() as tmp:
            rows = serve_rows([n for n in a.serve.split(",") if n], data_dir, Path(tmp),
                              [int(c) for c in a.clients.split(",")], a.seconds, max(1, a.repeat))
        print(f"\nmedians over {max(1, a.repeat)} interleaved rounds; matmul probe after: {matmul_gflops():.0f} "
              "GFLOP/s (a shared machine: other work skews timings)\n")
        print("| model | max batch | clients | requests | failed | req/s | p50 ms | p99 ms | mean batch |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]} | {r[5]:.1f} | {r[6]:.1f} | {r[7]:.1f} | {r[8]:.1f} |")
        return
    print_header("recommendation: danlu vs implicit on MovieLens ml-latest-small (temporal split, full ranking)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rows += danlu_rows([n for n in a.only.split(",") if n], data_dir, Path(tmp))
        if not a.skip_implicit:
            rows += implicit_rows(data_dir)
        ratings = [] if a.skip_ratings else rating_rows(data_dir, Path(tmp))
    print()
    print("| model | " + " | ".join(COLUMNS) + " | fit s | setting |")
    print("|---" * (len(COLUMNS) + 3) + "|")
    for r in rows:
        print(f"| {r['model']} | " + " | ".join(f"{r[c]:.4f}" for c in COLUMNS) + f" | {r['fit_s']} | {r['note']} |")
    if ratings:
        print("\n| explicit ratings, 5-fold CV | RMSE | MAE |\n|---|---|---|")
        print("\n".join(ratings))
    print(f"\nmatmul probe after: {matmul_gflops():.0f} GFLOP/s")


if __name__ == "__main__":
    main()
