"""A run killed with SIGKILL resumes and ends with the numbers of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import last_json

ARGS = ["digits-mlp", "train.epochs=6", "model.hidden=[512,512]", "train.batch_size=16"]


def _danlu(*args: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "danlu", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def test_resume_after_sigkill_matches_uninterrupted(tmp_path):
    env = dict(os.environ, DANLU_CACHE=str(tmp_path / "cache"))
    full = _danlu("train", *ARGS, "--json", "--quiet", "--runs-dir", str(tmp_path / "a"), env=env)
    out, err = full.communicate(timeout=300)
    assert full.returncode == 0, err
    expected = last_json(out)

    victim = _danlu("train", *ARGS, "--quiet", "--runs-dir", str(tmp_path / "b"), env=env)
    deadline = time.time() + 240
    ckpt_json = None
    while time.time() < deadline:
        found = list((tmp_path / "b").glob("*/checkpoints/last.json"))
        if found:
            ckpt_json = found[0]
            try:
                if json.loads(ckpt_json.read_text())["epoch"] >= 2:
                    break
            except (ValueError, KeyError):
                pass
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.communicate()
    assert ckpt_json is not None, "no checkpoint was written"
    run = ckpt_json.parents[1]
    assert not (run / "report.json").exists(), "the run finished before it could be killed; make it longer"

    resumed = _danlu("train", "--resume", str(run), "--json", "--quiet", env=env)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    got = last_json(out)
    assert got["metrics"] == expected["metrics"]
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == list(range(1, 7))
    assert Path(got["run"]) == run
