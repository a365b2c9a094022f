"""How well the two-tower model's feature tower ranks on its own: a trained run's test split scored (a) by
the whole model, (b) with every item's vector from its side features only (genres, year, title -> mix), the
vector a new item gets, and (c) Recall@20 over the test interactions with items that had no interaction
before test (cold items: collaborative vectors cannot rank them). Same protocol as the run's report
(per-user temporal split, train + validation known and masked, full catalogue).

    DANLU_DATA=../shared/datasets python benchmarks/twotower_features.py runs/<time>-movielens-twotower
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import matmul_gflops  # noqa: E402


def main(run_dir: str) -> None:
    from danlu.recommend.data import config_of, load_interactions, prepare_ranking
    from danlu.recommend.metrics import evaluate_ranking
    from danlu.recommend.predict import RecommenderRun

    print(f"probe: {matmul_gflops():.0f} GFLOP/s")
    run = RecommenderRun(Path(run_dir))
    recipe, model = run.recipe, run.model
    cfg = config_of(recipe)
    prepared = prepare_ranking(load_interactions(recipe), cfg, recipe.seed)
    known = prepared.known_at_test
    counts = prepared.train_counts()

    def whole(us: np.ndarray) -> np.ndarray:
        return model.score(us, known[us])

    def features_only(us: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return (model.user_vectors(us, known[us]) @ model.side_vectors().T).numpy()

    cold = np.asarray(known.sum(0)).ravel() == 0
    test = prepared.test.tocsr()
    cold_test = test.multiply(cold[None, :].astype(np.float32)).tocsr()
    cold_test.eliminate_zeros()
    print(f"test interactions {test.nnz}, with cold items {cold_test.nnz} ({int(cold.sum())} cold items)")
    for name, score in (("whole model", whole), ("features only", features_only)):
        m, _ = evaluate_ranking(score, known, test, cfg.k, counts)
        c, _ = evaluate_ranking(score, known, cold_test, cfg.k, counts)
        print(f"{name:14s} recall@20 {m['recall@20']:.4f}  ndcg@20 {m['ndcg@20']:.4f}  "
              f"cold-item recall@20 {c['recall@20']:.4f} ({int(c.get('users', 0))} users)")

    def cold_only(us: np.ndarray) -> np.ndarray:  # the cold items ranked among themselves, from features
        s = features_only(us)
        s[:, ~cold] = -np.inf
        return s

    c, _ = evaluate_ranking(cold_only, known, cold_test, cfg.k, counts)
    print(f"cold items among cold items only, from features: recall@20 {c['recall@20']:.4f} "
          f"ndcg@20 {c['ndcg@20']:.4f}; a random order: recall@20 {20 / cold.sum():.4f}")

    held_out_items(model, known, recipe.model.options)


def held_out_items(model, known, options: dict) -> None:
    """The regression's generalization: refit the side part on 90 % of the items with interactions and print
    the squared error on the other 10 % (beside zero vectors'), with and without its L2 (map_weight_decay)."""
    from danlu.recommend.feature_map import map_features

    with torch.no_grad():
        target = model.item_vectors().detach().clone()
    seen = torch.from_numpy(np.asarray(known.sum(0)).ravel() > 0)
    hold = torch.from_numpy(np.random.default_rng(0).random(len(seen)) < 0.1) & seen
    print(f"held-out items {int(hold.sum())}: zero vectors' error {float((target[hold] ** 2).sum(1).mean()):.4f}")
    steps, lr = int(options.get("map_steps", 300)), float(options.get("map_lr", 0.01))
    for wd in sorted({0.0, float(options.get("map_weight_decay", 0.003))}):
        with torch.no_grad():
            model.item.weight.copy_(target)
        info = map_features(model, seen & ~hold, steps=steps, lr=lr, weight_decay=wd)
        with torch.no_grad():
            err = float(((model.side_vectors()[hold] - target[hold]) ** 2).sum(1).mean())
        print(f"  map_weight_decay {wd:g}: fitted items {info['loss']:.4f}, held-out items {err:.4f}")


if __name__ == "__main__":
    main(sys.argv[1])
