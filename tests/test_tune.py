"""danlu tune: a search whose trials are runs, pruned through the loop's callback, kept in storage that
survives a SIGKILL and that several processes (on one machine or many, through PostgreSQL) share."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import last_json

SMALL = ["train.epochs=3", "data.limit_train=400"]


def _danlu(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "danlu", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env or dict(os.environ))


def _journal_study(folder: Path):
    import optuna

    from danlu.tuning import JOURNAL, _journal

    return optuna.load_study(study_name=folder.name, storage=_journal(folder / JOURNAL))


def test_a_study_of_runs_with_results_figures_and_a_trainable_best(cli, tmp_path):
    code, out, err = cli("tune", "digits-mlp", *SMALL, "--trials", "7", "--study", "s1", "--json")
    assert code == 0, err
    summary = last_json(out)
    assert summary["study"] == "s1"
    assert summary["trials"]["complete"] + summary["trials"]["pruned"] == 7
    folder = tmp_path / "runs" / "s1"
    study = json.loads((folder / "study.json").read_text())
    assert study["metric"] == "val_accuracy" and study["direction"] == "maximize"
    best = study["best"]
    assert best["value"] == max(t["value"] for t in study["trials"] if t["state"] == "complete")
    assert summary["best"]["run"] == best["run"] == str((folder / f"trial-{best['trial']:04d}").resolve())
    for t in study["trials"]:  # every trial is a run whose recipe holds its parameters
        run = Path(t["run"])
        recipe = yaml.safe_load((run / "recipe.yaml").read_text())
        assert "tune" not in recipe and recipe["train"]["lr"] == pytest.approx(t["params"]["train.lr"])
        assert recipe["model"]["hidden"] == t["params"]["model.hidden"]
        status = json.loads((run / "status.json").read_text())["status"]
        assert status == ("pruned" if t["state"] == "pruned" else "done")
        assert (run / "model.safetensors").exists()
    assert {p.name for p in (folder / "plots").iterdir()} == {"history.png", "importances.png",
                                                              "parallel_coordinates.png"}
    code, out, err = cli("train", folder / "best.yaml", "--json", "--quiet")  # the winner, trainable as is
    assert code == 0, err
    code, out, _ = cli("predict", best["run"], "--json", str(Path(__file__).parent / "data" / "missing.png"))
    assert code == 2  # a missing input is still a user error on a trial run
    code, _, err = cli("train", "--resume", best["run"])
    assert code == 2 and "without resumable checkpoints" in err  # trials keep no per-epoch state
    code, out, err = cli("tune", "show", "s1")
    assert code == 0 and "best recipe" in out and "trial" in out.splitlines()[0]
    code, out, err = cli("tune", "show", "s1", "--json")
    assert code == 0 and last_json(out) == summary


def test_pruning_stops_trials_early_and_marks_them(cli, tmp_path):
    # a learning rate so low that most trials lag: the median pruner stops them after an epoch or two
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\ndata: {name: digits, limit_train: 300}\nmodel: {name: mlp, hidden: [32]}\n"
                      "train: {epochs: 6, batch_size: 64}\n"
                      "tune:\n  train.lr: {low: 1.0e-6, high: 3.0e-2, log: true}\n")
    code, out, err = cli("tune", recipe, "--trials", "14", "--sampler", "random", "--json")
    assert code == 0, err
    summary = last_json(out)
    assert summary["trials"]["pruned"] >= 1
    study = json.loads((tmp_path / "runs" / "r-study" / "study.json").read_text())
    pruned = [t for t in study["trials"] if t["state"] == "pruned"]
    assert all(t["epochs"] < 6 for t in pruned)


def test_grid_search_walks_the_choices(cli, tmp_path):
    recipe = tmp_path / "g.yaml"
    recipe.write_text("name: g\ndata: {name: iris}\nmodel: {name: mlp, hidden: [16]}\ntrain: {epochs: 2}\n"
                      "tune:\n  train.batch_size: {choices: [16, 32]}\n  model.hidden: {choices: [[8], [16, 8]]}\n")
    code, out, err = cli("tune", recipe, "--sampler", "grid", "--pruner", "none", "--trials", "10", "--json")
    assert code == 0, err
    study = json.loads((tmp_path / "runs" / "g-study" / "study.json").read_text())
    points = sorted((t["params"]["train.batch_size"], tuple(t["params"]["model.hidden"])) for t in study["trials"])
    assert points == [(16, (8,)), (16, (16, 8)), (32, (8,)), (32, (16, 8))]  # the grid, once each


@pytest.mark.parametrize("args, needle", [
    (("iris-nothing",), "unknown recipe"),
    (("digits-mlp", "tune=null"), "has no search space"),
    (("digits-mlp", "--sampler", "grid"), "--sampler grid needs choices"),
    (("digits-mlp", "--sampler", "bayes"), "unknown sampler 'bayes'"),
    (("digits-mlp", "--pruner", "asha"), "unknown pruner 'asha'"),
    (("digits-mlp", "--metric", "val_acc"), "did you mean 'val_accuracy'"),
    (("digits-mlp", "--metric", "test_accuracy"), "unknown --metric"),
    (("digits-mlp", "--trials", "0"), "--trials must be a positive"),
    (("digits-mlp", "tune={train.lrr: {low: 0.1, high: 1}}"), "unknown key 'train.lrr'"),
    (("digits-mlp", "tune={train.lr: {low: 0.1, high: 0.01}}"), "low (0.1) is above high (0.01)"),
    (("digits-mlp", "tune={train.lr: {low: 0, high: 0.1, log: true}}"), "log: true needs low > 0"),
    (("digits-mlp", "tune={train.lr: {}}"), "needs low and high"),
    (("digits-mlp", "--storage", "postgresql://nobody@127.0.0.1:9/none"), "cannot open the study storage"),
])
def test_bad_searches_exit_2_and_leave_no_study_folder(cli, tmp_path, args, needle):
    code, out, err = cli("tune", *args, "--trials", args[args.index("--trials") + 1] if "--trials" in args else "2")
    assert code == 2, (out, err)
    assert needle in err, err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_killed_study_keeps_its_trials_and_runs_to_n_in_total(tmp_path):
    runs = tmp_path / "runs"
    env = dict(os.environ, DANLU_CACHE=str(tmp_path / "cache"))
    args = ["tune", "digits-mlp", "train.epochs=15", "data.limit_train=400", "--trials", "3", "--pruner", "none",
            "--study", "k", "--runs-dir", str(runs), "--quiet"]
    victim = _danlu(*args, env=env)
    deadline = time.time() + 240
    while time.time() < deadline:  # trial 0 done, trial 1 under way
        metrics = runs / "k" / "trial-0001" / "metrics.jsonl"
        if metrics.exists() and metrics.read_text().count("\n") >= 2:
            break
        assert victim.poll() is None, victim.communicate()
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.communicate()
    again = _danlu(*args, "--json", env=env)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    summary = last_json(out)
    assert summary["trials"] == {"complete": 3, "pruned": 0, "failed": 1}
    states = {t.number: t.state.name for t in _journal_study(runs / "k").trials}
    assert states[1] == "FAIL" and states[0] == "COMPLETE" and list(states.values()).count("COMPLETE") == 3


def _postgres_binaries() -> Path | None:
    for found in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (found / "initdb").exists():
            return found
    which = shutil.which("initdb")
    return Path(which).resolve().parent if which else None


@pytest.fixture
def postgres():
    """A real PostgreSQL server in a temporary folder, on 127.0.0.1 and a free port, stopped afterwards."""
    bins = _postgres_binaries()
    if bins is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is missing: .ci/run installs it (apt-get install postgresql)")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    as_user: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="danlu-pg-", dir="/tmp"))
    if os.geteuid() == 0:  # the server refuses to run as root
        import pwd

        user = pwd.getpwnam("postgres")
        os.chown(folder, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = folder / "data"
    subprocess.run([*as_user, str(bins / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True, timeout=120)
    subprocess.run([*as_user, str(bins / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-w", "-t", "60",
                    "-o", f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c max_connections=50 "
                    "-c fsync=off -c synchronous_commit=off", "start"],  # a throwaway server: no durability
                   check=True, capture_output=True, timeout=90)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, str(bins / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


def test_two_processes_share_one_study_in_postgresql(tmp_path, postgres):
    import optuna

    env = dict(os.environ, DANLU_CACHE=str(tmp_path / "cache"))
    # trials long enough (~1 s) that the second worker joins before the first has done them all
    args = ["tune", "digits-mlp", "train.epochs=6", "--pruner", "none", "--trials", "8", "--study", "shared",
            "--storage", postgres, "--quiet", "--json"]
    workers = [_danlu(*args, "--runs-dir", str(tmp_path / f"machine{i}"), env=env) for i in range(2)]
    outs = [w.communicate(timeout=300) for w in workers]
    for w, (_, err) in zip(workers, outs, strict=True):
        assert w.returncode == 0, err
    study = optuna.load_study(study_name="shared", storage=postgres)
    finished = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert 8 <= len(finished) <= 9  # each worker stops once 8 have finished; one may be mid-trial then
    owners = {t.user_attrs["owner"]["pid"] for t in study.trials}
    assert owners == {w.pid for w in workers}  # both did trials of the one study
    numbers = [t.number for t in study.trials]
    assert len(numbers) == len(set(numbers))
    made = sorted(p.name for i in range(2) for p in (tmp_path / f"machine{i}" / "shared").glob("trial-*"))
    assert made == sorted(f"trial-{n:04d}" for n in numbers)  # each trial's run folder on its own machine


def test_tune_show_of_a_study_that_is_not_there(cli):
    code, _, err = cli("tune", "show", "nope")
    assert code == 2 and "no study 'nope'" in err
    code, _, err = cli("tune", "show")
    assert code == 2 and "tune show needs one STUDY name" in err
