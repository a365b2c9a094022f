"""recommend.index=faiss against exact top-k on a generated catalogue of 1-2 M items (danlu/recommend/index.py).

The catalogue is what an MF model of a big shop looks like, generated: item vectors = one of T topic centres
(topics Zipf-popular) + noise, an item bias ~ N(0, 0.5); user vectors are mixtures of two topic centres + noise.
Exact top-k is every item's score (torch matmul in chunks); the index is danlu's IVF inner-product index over
[vector, bias] with √n clusters, queried with `probes` clusters. Recall@k = |index top-k ∩ exact top-k| / k,
averaged over the query users. Times: index build (k-means + add), and per query in batches of 100 users.

    python benchmarks/recommend_index.py [--items 2000000] [--dim 64] [--users 1000] [--probes 8,16,32,64,128]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import matmul_gflops, print_header  # noqa: E402


def catalogue(n: int, dim: int, users: int, topics: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(topics, dim)).astype(np.float32) / np.sqrt(dim)
    share = 1.0 / np.arange(1, topics + 1)
    topic = rng.choice(topics, size=n, p=share / share.sum())
    items = centres[topic] + rng.normal(scale=0.5 / np.sqrt(dim), size=(n, dim)).astype(np.float32)
    bias = rng.normal(scale=0.5, size=n).astype(np.float32)
    pick = rng.choice(topics, size=(users, 2), p=share / share.sum())
    u = 2 * (centres[pick[:, 0]] + centres[pick[:, 1]]) + rng.normal(scale=0.5 / np.sqrt(dim),
                                                                      size=(users, dim)).astype(np.float32)
    return items.astype(np.float32), bias, (u * 4).astype(np.float32)


def exact_top(items: np.ndarray, bias: np.ndarray, users: np.ndarray, k: int) -> tuple[np.ndarray, float]:
    import torch

    v, b = torch.from_numpy(items), torch.from_numpy(bias)
    tops, t0 = [], time.perf_counter()
    for s in range(0, len(users), 100):
        scores = torch.from_numpy(users[s:s + 100]) @ v.T + b
        tops.append(torch.topk(scores, k, dim=1).indices.numpy())
    return np.concatenate(tops), (time.perf_counter() - t0) / len(users)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--items", type=int, default=2_000_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--topics", type=int, default=2000)
    p.add_argument("--probes", default="8,16,32,64,128")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    import faiss

    from danlu.recommend.index import ItemIndex

    print_header("recommend.index: faiss IVF vs exact top-k")
    print(f"- faiss: {faiss.__version__} ({faiss.omp_get_max_threads()} threads)")
    print(f"- matmul probe before: {matmul_gflops():.0f} GFLOP/s")
    t = time.perf_counter()
    items, bias, users = catalogue(a.items, a.dim, a.users, a.topics, a.seed)
    print(f"- catalogue: {a.items} items x {a.dim} dims (+ bias), {a.topics} topics, {a.users} query users; "
          f"generated in {time.perf_counter() - t:.1f} s")
    exact, exact_s = exact_top(items, bias, users, 100)
    t = time.perf_counter()
    index = ItemIndex(items, bias, probes=1)
    build_s = time.perf_counter() - t
    print(f"- index: {index.clusters} clusters, built in {build_s:.1f} s; exact top-100: "
          f"{exact_s * 1e3:.2f} ms a query (batches of 100)\n")
    print("| probes | items scored / query | recall@10 | recall@100 | ms / query | speed-up vs exact |")
    print("|---:|---:|---:|---:|---:|---:|")
    for probes in [int(x) for x in a.probes.split(",")]:
        index.index.nprobe = min(probes, index.clusters)
        t = time.perf_counter()
        found = np.concatenate([index.search(users[s:s + 100], 100)[1] for s in range(0, len(users), 100)])
        per_query = (time.perf_counter() - t) / len(users)
        r10 = np.mean([len(set(f[:10]) & set(e[:10])) / 10 for f, e in zip(found, exact, strict=True)])
        r100 = np.mean([len(set(f) & set(e)) / 100 for f, e in zip(found, exact, strict=True)])
        scanned = int(a.items * min(probes, index.clusters) / index.clusters)
        print(f"| {probes} | ~{scanned:,} | {r10:.4f} | {r100:.4f} | {per_query * 1e3:.2f} | "
              f"{exact_s / per_query:.1f}x |")
    print(f"\n- matmul probe after: {matmul_gflops():.0f} GFLOP/s")


if __name__ == "__main__":
    main()
