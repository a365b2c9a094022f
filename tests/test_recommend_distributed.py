"""`danlu train movielens-bpr --nproc 2` (danlu/recommend/distributed.py): two gloo processes against one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from tests.test_recommend_evaluate import _table

ROOT = Path(__file__).resolve().parents[1]


def test_shares_cover_each_batch_once_and_keep_the_negatives_aligned():
    from danlu.recommend.distributed import Shard

    idx = torch.arange(7) * 10
    u, i, j = idx.repeat(3), idx.repeat(3) + 1, torch.arange(21) + 1000  # 3 negatives per positive
    parts = [Shard(r, 3).take(idx, u, i, j) for r in range(3)]
    assert torch.equal(torch.cat([p[0] for p in parts]), idx)
    for p_idx, p_u, p_i, p_j in parts:
        assert torch.equal(p_u, p_idx.repeat(3)) and torch.equal(p_i, p_idx.repeat(3) + 1)
        assert torch.equal(p_j - 1000, torch.cat([(p_u[:len(p_idx)] // 10) + r * 7 for r in range(3)]))
    shard = Shard(0, 2)
    one = shard.take(idx[:1], u[:1], i[:1], j[:1])  # a last batch of one: process 0's share is empty
    assert len(one[0]) == 0 and shard.weight == 0.0


def test_two_processes_train_the_one_process_model(tmp_path):
    from safetensors.numpy import load_file

    from danlu.api import train

    data = _table(tmp_path)
    # 67 does not divide the positives: the last batch's shares differ in size
    args = ["data.name=interactions", f"data.path={data}", "recommend.rating_scale=[1,5]", "train.epochs=3",
            "model.factors=8", "train.batch_size=67", "model.loss=bpr", "model.dropout=0", "model.negatives=4",
            "model.reg=0.0001"]  # BPR, as the recipe was (its default is now the softmax with user dropout)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                             "MASTER_PORT", "SLURM_PROCID")}
    done = subprocess.run([sys.executable, "-m", "danlu", "train", "movielens-bpr", *args, "--nproc", "2", "--json",
                           "--quiet", "--runs-dir", str(tmp_path / "two")], capture_output=True, text=True,
                          timeout=240, stdin=subprocess.DEVNULL, env={**env, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    two = json.loads(done.stdout.strip().splitlines()[-1])
    one = train("movielens-bpr", args, runs_dir=tmp_path / "one", progress=False, plots=False)
    report = json.loads((Path(two["run"]) / "report.json").read_text())
    dist = report["training"]["distributed"]
    assert dist["processes"] == 2 and dist["backend"] == "gloo"
    per_epoch = one.report["sizes"]["train"]
    refit = one.report["sizes"]["train"] + one.report["sizes"]["val"]
    assert sum(dist["pairs_per_process"]) == 3 * per_epoch + report["training"]["refit"]["epochs"] * refit
    assert min(dist["pairs_per_process"]) > 0.45 * sum(dist["pairs_per_process"])  # split, not repeated
    a, b = load_file(str(one.run / "model.safetensors")), load_file(str(Path(two["run"]) / "model.safetensors"))
    assert a.keys() == b.keys() and max(float(np.abs(a[k] - b[k]).max()) for k in a) < 1e-5
    assert report["training"]["best_epoch"] == one.report["training"]["best_epoch"]
    assert len((Path(two["run"]) / "metrics.jsonl").read_text().splitlines()) == 3  # process 0 logged, alone


def test_a_closed_form_model_is_refused_before_any_process_starts(tmp_path, cli):
    code, _, err = cli("train", "movielens-ease", "--nproc", "2")
    assert code == 2 and "closed form" in err and "mf, two_tower" in err
