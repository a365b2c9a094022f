"""`danlu evaluate` on recommendation runs, and `danlu train --resume` after a real kill -9 (a subprocess)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import last_json

SHARED = Path(os.environ.get("DANLU_DATA", Path(__file__).resolve().parents[2] / "shared" / "datasets"))
MOVIELENS = SHARED / "movielens"
needs_movielens = pytest.mark.skipif(not (MOVIELENS / "ratings.csv").is_file(), reason="shared movielens not available")


def _table(tmp_path: Path, users: int = 40, items: int = 30) -> Path:
    import numpy as np

    rng = np.random.default_rng(0)
    rows = ["customer,product,stars,when"]
    for u in range(users):
        pool = np.arange(items // 2) if u % 2 else np.arange(items // 2, items)  # two tastes
        rows += [f"c{u},p{i},{rng.integers(1, 6)},{1000 + 10 * t + u}"
                 for t, i in enumerate(rng.choice(pool, size=12, replace=False))]
    path = tmp_path / "events.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_evaluate_scores_a_recommendation_run_again_on_test_and_val(tmp_path, cli):
    data = _table(tmp_path)
    on = ["data.name=interactions", f"data.path={data}", "recommend.rating_scale=[1,5]"]
    code, out, err = cli("train", "movielens-bpr", *on, "train.epochs=3", "model.factors=8", "--quiet", "--json")
    assert code == 0, err
    run = Path(last_json(out)["run"])
    trained = json.loads((run / "report.json").read_text())
    code, out, err = cli("evaluate", run, "--json")
    assert code == 0, err
    got = last_json(out)
    drop = ("eval_seconds",)
    assert {k: v for k, v in got["metrics"].items() if k not in drop} == \
        {k: v for k, v in trained["metrics"].items() if k not in drop}  # the same weights on the same split
    assert got["popularity"] == trained["popularity"]
    code, out, err = cli("evaluate", run, "--split", "val", "--k", "5,3")
    assert code == 0, err
    assert "val split" in out and "| popularity |" in out and "recall@3" in out and "recall@5" in out
    val = json.loads((run / "report-val-k3-5.json").read_text())
    assert val["split"] == "val" and set(val["metrics"]) >= {"recall@3", "ndcg@5", "hr@5", "mrr", "coverage@5",
                                                             "pop_share@5"}
    assert val["metrics"]["users"] > 0 and any("read high" in n for n in val["notes"])  # refit saw val
    assert (run / "plots" / "recall_at_k-val-k3-5.png").is_file()
    assert json.loads((run / "report.json").read_text())["metrics"]["recall@20"] == trained["metrics"]["recall@20"]
    code, _, err = cli("evaluate", run, "--split", "train")
    assert code == 2 and "val or test" in err
    code, _, err = cli("evaluate", run, "--k", "0")
    assert code == 2 and "at least 1" in err
    data.write_text(data.read_text().replace("c3,", "c3x,"), encoding="utf-8")  # the table changed
    code, _, err = cli("evaluate", run)
    assert code == 2 and "other users or items" in err


@needs_movielens
def test_a_run_killed_with_sigkill_resumes_to_the_uninterrupted_result(tmp_path, cli):
    from safetensors.numpy import load_file

    from danlu.api import train

    # ~22 steps an epoch: the kill lands well before the end (5 more epochs, then the refit)
    args = ["recommend.limit_users=50", "model.factors=8", "train.epochs=6", "train.batch_size=256",
            "train.early_stop.patience=6"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "DANLU_DATA": str(SHARED),
           "OMP_NUM_THREADS": "1"}
    runs = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "danlu", "train", "movielens-bpr", *args, "--runs-dir", str(runs),
                             "--quiet"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while not list(runs.glob("*/checkpoints/select.safetensors")):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint after 120 s"
            time.sleep(0.005)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    (run,) = runs.iterdir()
    assert json.loads((run / "status.json").read_text())["status"] == "training"  # nothing tidied up
    assert not (run / "report.json").exists()
    code, out, err = cli("train", "--resume", run, "--json", "--data-dir", SHARED)
    assert code == 0, err
    resumed = last_json(out)
    whole = train("movielens-bpr", args, runs_dir=tmp_path / "whole", data_dir=SHARED, progress=False, plots=False)
    drop = ("fit_seconds", "eval_seconds")
    assert {k: v for k, v in resumed["metrics"].items() if k not in drop} == \
        {k: v for k, v in whole.metrics.items() if k not in drop}
    a, b = load_file(str(whole.run / "model.safetensors")), load_file(str(run / "model.safetensors"))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)  # bit for bit
