"""Data-parallel training (danlu/training/distributed.py): 2 CPU processes over gloo on 127.0.0.1 against one process.

The end-to-end cases start real processes through ``danlu train --nproc 2`` (torchrun's launcher), each
bounded by a timeout: a hang fails the test instead of blocking the suite.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from danlu.training.distributed import ShardedLoader, World, merge_small, world_from_env

ROOT = Path(__file__).resolve().parents[1]
MLP = ["digits-mlp", "model.batch_norm=false", "model.dropout=0", "train.batch_size=80", "train.epochs=2"]
# 8×8 digits: one valid 3×3 conv (→ 6×6, pooled to 3×3) and a dense layer; 17 steps an epoch, 34 in all
CNN = ["digits-mlp", "model.name=cnn", "model.channels=[8]", "model.hidden=[32]", "model.dropout=0",
       "train.batch_size=80", "train.epochs=2"]


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), DANLU_CACHE=str(tmp / "cache"))
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_PROCID"):
        env.pop(k, None)
    return {**env, **extra}


def _danlu(tmp: Path, *args: str, timeout: float = 240, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "danlu", *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env=_env(tmp, **env), cwd=tmp)


def _train(tmp: Path, args: list[str], runs: str, *more: str) -> dict:
    done = _danlu(tmp, "train", *args, "--runs-dir", str(tmp / runs), "--quiet", "--json", *more)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _weights(run: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    state = load_file(str(Path(run) / "checkpoints" / "last.safetensors"))
    return {k: v for k, v in state.items() if k.startswith("model.")}


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


# ---------------------------------------------------------------- equivalence with one process


@pytest.mark.parametrize("args", [MLP, CNN], ids=["mlp", "cnn"])
def test_two_processes_train_the_same_weights_as_one(tmp_path, args):
    """Same global batch, same permutation: 34 Adam steps later the weights agree within 1e-5 (1,295 samples
    at batch 80 end each epoch in a batch of 15, split 8/7: the weighted gradient sum makes that exact)."""
    one = _train(tmp_path, [*args, "train.threads=1"], "one")
    two = _train(tmp_path, args, "two", "--nproc", "2")
    assert _max_diff(_weights(one["run"]), _weights(two["run"])) < 1e-5
    for k, v in one["metrics"].items():  # test metrics scored across both ranks
        assert abs(two["metrics"][k] - v) < 1e-3, k
    rows = [[json.loads(line) for line in (Path(r["run"]) / "metrics.jsonl").read_text().splitlines()]
            for r in (one, two)]
    for a, b in zip(*rows, strict=True):  # val metrics (all-reduced) and training sums per epoch
        for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr"):
            assert abs(a[k] - b[k]) < 1e-4, (k, a[k], b[k])
    env = json.loads((Path(two["run"]) / "env.json").read_text())
    assert env["processes"] == 2 and env["backend"] == "gloo"
    assert len(list((tmp_path / "two").iterdir())) == 1  # one run folder, written by rank 0


def test_regression_metrics_are_gathered_over_the_whole_split(tmp_path):
    """R² needs every target's mean: the predictions of both ranks are gathered, not averaged per rank, and
    the test report equals what one process (danlu evaluate) scores with the same weights."""
    two = _train(tmp_path, ["diabetes-mlp", "train.epochs=3"], "two", "--nproc", "2")
    again = _danlu(tmp_path, "evaluate", two["run"], "--json")
    assert again.returncode == 0, again.stderr[-2000:]
    one = json.loads(again.stdout.strip().splitlines()[-1])["metrics"]
    assert one.keys() == two["metrics"].keys() == {"mse", "mae", "r2"}
    for k, v in one.items():
        assert abs(two["metrics"][k] - v) < 1e-6 * max(1.0, abs(v)), k


# ---------------------------------------------------------------- failures


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def _rank_of(pid: int) -> str | None:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    found = [e[5:].decode() for e in env if e.startswith(b"RANK=")]
    return found[0] if found else None


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="finds the worker processes through /proc")
def test_a_killed_rank_ends_the_job_and_resume_finishes_it(tmp_path):
    args = [*MLP[:-1], "train.epochs=5", "model.dropout=0.1"]  # dropout: its per-rank RNG must resume too
    whole = _train(tmp_path, args, "whole", "--nproc", "2")
    runs = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "danlu", "train", *args, "--runs-dir", str(runs), "--quiet",
                             "--nproc", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, env=_env(tmp_path), cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list(runs.glob("*/metrics.jsonl")):
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            time.sleep(0.05)
        rank1 = [c for c in _children(proc.pid) if _rank_of(c) == "1"]
        assert rank1, "no worker with RANK=1"
        os.kill(rank1[0], signal.SIGKILL)
        killed_at = time.monotonic()
        _, err = proc.communicate(timeout=60)  # the job ends, no hang
        assert time.monotonic() - killed_at < 60
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 2, err[-2000:]
    assert "process 1 of 2 stopped (killed by SIGKILL)" in err
    run = next(runs.iterdir())
    assert f"danlu train --resume {run} --nproc 2" in err
    status = json.loads((run / "status.json").read_text())
    assert status["status"] != "done" and status["epoch"] < 5
    resumed = _train(tmp_path, ["--resume", str(run)], "killed", "--nproc", "2")
    assert resumed["metrics"] == whole["metrics"]
    assert _max_diff(_weights(resumed["run"]), _weights(whole["run"])) < 1e-6


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_wrong_rendezvous_address_fails_clearly_not_a_hang(tmp_path):
    port = _closed_port()  # nobody listens there
    t0 = time.monotonic()
    done = _danlu(tmp_path, "train", "digits-mlp", "--runs-dir", str(tmp_path / "runs"), timeout=90,
                  RANK="1", WORLD_SIZE="2", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                  DANLU_DIST_TIMEOUT_S="5")
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"rank 1 of 2 could not join the rendezvous at 127.0.0.1:{port} within 5 s" in done.stderr
    assert "MASTER_ADDR" in done.stderr
    assert time.monotonic() - t0 < 60
    assert not (tmp_path / "runs").exists()  # nothing written


def test_nproc_under_a_launcher_is_refused(cli, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    code, _, err = cli("train", "digits-mlp", "--nproc", "2")
    assert code == 2 and "under torchrun or srun leave --nproc out" in err


# ---------------------------------------------------------------- the pieces, in one process


def test_ranks_come_from_torchrun_or_srun():
    assert world_from_env({}) == World()
    assert world_from_env({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1"}) == World(3, 8, 1, "torchrun")
    srun = {"SLURM_PROCID": "5", "SLURM_STEP_NUM_TASKS": "8", "SLURM_LOCALID": "1", "SLURM_NTASKS": "8"}
    assert world_from_env(srun) == World(5, 8, 1, "SLURM")
    batch_script = {"SLURM_PROCID": "0", "SLURM_NTASKS": "8"}  # the sbatch script itself, outside srun
    assert not world_from_env(batch_script).distributed


def test_merge_small_gives_every_rank_a_sample():
    batches = [torch.arange(0, 4), torch.arange(4, 8), torch.arange(8, 10)]
    merged = merge_small(batches, 3)
    assert [len(b) for b in merged] == [4, 6]
    assert torch.equal(torch.cat(merged), torch.arange(10))
    assert [len(b) for b in merge_small(batches, 2)] == [4, 4, 2]


def test_ranks_share_each_global_batch_once():
    """Both ranks' parts of each step make up the one-process batch, in the same shuffled order."""
    from danlu.data.tensors import TensorLoader, TensorSplit

    split = TensorSplit(torch.arange(103, dtype=torch.float32).reshape(-1, 1), torch.arange(103))

    def loader() -> TensorLoader:
        return TensorLoader(split, 10, kind="tabular", shuffle=True, generator=torch.Generator().manual_seed(0))

    one = [y for _, y in loader()]
    parts = [ShardedLoader(loader(), r, 2) for r in range(2)]
    two = list(zip(*[[y for _, y in p] for p in parts], strict=True))
    assert len(parts[0]) == len(one) == len(two)
    for y, (a, b) in zip(one, two, strict=True):
        assert torch.equal(y, torch.cat([a, b])) and abs(len(a) - len(b)) <= 1


def test_ranks_share_the_streaming_loaders_batches_too(tmp_path):
    """The image-folder loader that decodes files on demand splits each global batch the same way."""
    import numpy as np
    from PIL import Image

    from danlu.data.streaming import ImageFileDataset, StreamLoader

    paths = []
    for i in range(23):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(np.full((8, 8), i * 10, np.uint8)).save(paths[-1])
    dataset = ImageFileDataset(paths, list(range(23)), 8, 1)

    def loader() -> StreamLoader:
        return StreamLoader(dataset, 5, shuffle=True, generator=torch.Generator().manual_seed(1), augment=None,
                            device="cpu", channels_last=False, workers=0)

    one = [y for _, y in loader()]
    two = list(zip(*[[y for _, y in ShardedLoader(loader(), r, 2)] for r in range(2)], strict=True))
    assert len(one) == len(two) == 5
    for y, (a, b) in zip(one, two, strict=True):
        assert torch.equal(y, torch.cat([a, b]))
