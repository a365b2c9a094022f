"""danlu federate. Partitions, argument checks and FedProx's term run here; Flower's parts run in Flower's own
environment (.venv-flower, `make federated-setup`; DANLU_FLOWER_PYTHON names another), as CLI subprocesses:
the in-process simulation on digits, its bad inputs, and a real SuperLink with two SuperNodes on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from danlu.federated.partition import partition

REPO = Path(__file__).resolve().parents[1]
FLOWER_PY = Path(os.environ.get("DANLU_FLOWER_PYTHON", REPO / ".venv-flower" / "bin" / "python"))
NO_BN = "model.batch_norm=false"  # digits-mlp's BatchNorm is refused by danlu federate


def flower_python() -> Path:
    if FLOWER_PY.exists():
        return FLOWER_PY
    if os.environ.get("CI"):
        pytest.fail(f"{FLOWER_PY} is missing: .ci/run must run `make federated-setup` before `make test`")
    pytest.skip("Flower's environment is not set up: make federated-setup")


def flower_env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PATH": f"{FLOWER_PY.parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("VIRTUAL_ENV", None)
    return env


def federate(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([str(flower_python()), "-m", "danlu", "federate", *map(str, args)], capture_output=True,
                          text=True, env=flower_env(), timeout=timeout, cwd=REPO)


# ---------------------------------------------------------------- partitions (numpy only)


LABELS = np.repeat(np.arange(10), 60)  # 600 samples, 10 classes


@pytest.mark.parametrize("split", ["iid", "shards", "dirichlet:0.5"])
def test_every_sample_goes_to_exactly_one_client(split):
    parts = partition(LABELS, 12, split, seed=3)
    assert len(parts) == 12 and all(len(p) > 0 for p in parts)
    joined = np.concatenate(parts)
    assert sorted(joined.tolist()) == list(range(len(LABELS)))
    assert [p.tolist() for p in partition(LABELS, 12, split, seed=3)] == [p.tolist() for p in parts]  # seeded


def test_shards_give_each_client_at_most_two_labels_and_iid_all_of_them():
    shards = partition(LABELS, 20, "shards", seed=0)
    assert max(len(np.unique(LABELS[p])) for p in shards) <= 2
    assert all(len(p) == 30 for p in shards)  # two shards of 600 / 40
    iid = partition(LABELS, 20, "iid", seed=0)
    assert min(len(np.unique(LABELS[p])) for p in iid) >= 5


def test_dirichlet_skews_labels_more_as_alpha_shrinks():
    def mean_labels(alpha: float) -> float:
        return float(np.mean([len(np.unique(LABELS[p])) for p in partition(LABELS, 10, f"dirichlet:{alpha}", 1)]))

    assert mean_labels(0.05) < mean_labels(100.0)


def test_partition_refuses_more_clients_than_samples_and_unknown_splits():
    from danlu.errors import DanluError, DataError

    with pytest.raises(DataError, match="more than the 600 training samples"):
        partition(LABELS, 601, "iid")
    with pytest.raises(DataError, match="fewer samples than shards"):
        partition(LABELS, 400, "shards")
    with pytest.raises(DanluError, match="split"):
        partition(LABELS, 4, "pathological")
    with pytest.raises(DanluError, match="positive"):
        partition(LABELS, 4, "dirichlet:-1")


def test_fedprox_adds_half_mu_times_the_squared_distance_to_the_global_weights():
    import torch

    from danlu.federated.local import ProximalStep

    model = torch.nn.Linear(3, 2)
    plain = ProximalStep(lambda x, y: (torch.tensor(1.0), x), model, mu=0.0)
    step = ProximalStep(lambda x, y: (torch.tensor(1.0), x), model, mu=0.5)
    with torch.no_grad():
        model.weight += 2.0  # 6 weights moved by 2: squared distance 24
    assert float(plain(torch.zeros(1), None)[0].detach()) == pytest.approx(1.0)
    assert float(step(torch.zeros(1), None)[0].detach()) == pytest.approx(1.0 + 0.25 * 24)


@pytest.mark.parametrize("args, message", [
    (["--fraction", "0"], "outside (0, 1]"),
    (["--fraction", "1.5"], "outside (0, 1]"),
    (["--clients", "0"], "at least one client"),
    (["--strategy", "fedsgd"], "strategy"),
    (["--superlink", "nohost"], "HOST:PORT"),
])
def test_bad_arguments_exit_2_with_the_fix_before_anything_loads(cli, tmp_path, args, message):
    code, out, err = cli("federate", "digits-mlp", NO_BN, *args, "--runs-dir", tmp_path / "runs")
    assert code == 2 and message in err
    assert not (tmp_path / "runs").exists()


def test_without_flower_the_error_says_how_to_set_it_up(cli, tmp_path):
    try:
        import flwr  # noqa: F401
        pytest.skip("Flower is installed in this environment")
    except ImportError:
        pass
    code, out, err = cli("federate", "digits-mlp", NO_BN, "--runs-dir", tmp_path / "runs")
    assert code == 2 and "make federated-setup" in err


# ---------------------------------------------------------------- Flower: the in-process simulation


def test_simulated_federation_on_digits_leaves_a_normal_run_that_improves(tmp_path):
    runs = tmp_path / "runs"
    # IID: with 2-label shards, 3 of 5 clients for 3 rounds lands anywhere from 0.2 to 0.5 depending on the draw
    r = federate("digits-mlp", NO_BN, "train.lr=0.01", "--clients", 5, "--rounds", 3, "--fraction", 0.6,
                 "--local-epochs", 1, "--split", "iid", "--runs-dir", runs, "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    run = Path(result["run"])
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [row["round"] for row in rows] == [1, 2, 3]
    for row in rows:
        assert row["clients"] == 3  # max(0.6 · 5, 1)
        assert sum(row["client_samples"].values()) == row["samples"] > 0
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "done" and status["federated"]["split"] == "iid"
    initial = status["federated"]["initial"]["test_accuracy"]
    assert rows[-1]["test_accuracy"] > initial + 0.2  # from chance (~0.1) to well above it in 3 rounds
    assert result["metrics"]["accuracy"] == pytest.approx(rows[-1]["test_accuracy"])
    assert (run / "plots" / "accuracy_by_round.png").stat().st_size > 0
    # a normal run: this environment's danlu evaluates the saved global model to the same score
    import danlu

    assert danlu.evaluate(run)["metrics"]["accuracy"] == pytest.approx(rows[-1]["test_accuracy"])


def test_a_seeded_simulation_samples_the_same_clients_every_time(tmp_path):
    def sampled(seed: int) -> list[list[str]]:
        r = federate("digits-mlp", NO_BN, f"seed={seed}", "--clients", 6, "--rounds", 3, "--fraction", 0.5,
                     "--local-epochs", 0.2, "--split", "shards", "--runs-dir", tmp_path / str(seed), "--json")
        assert r.returncode == 0, r.stderr[-3000:]
        run = Path(json.loads(r.stdout.strip().splitlines()[-1])["run"])
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return [sorted(row["client_samples"]) for row in rows]

    first = sampled(0)
    assert sampled(0) == first
    assert len({tuple(r) for r in first}) > 1 or sampled(1) != first  # the draw changes, not a fixed subset


def test_fedprox_runs_and_records_its_weight(tmp_path):
    r = federate("digits-mlp", NO_BN, "--clients", 3, "--rounds", 1, "--strategy", "fedprox", "--mu", 0.1,
                 "--runs-dir", tmp_path / "runs", "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    status = json.loads((Path(json.loads(r.stdout.splitlines()[-1])["run"]) / "status.json").read_text())
    assert status["federated"]["strategy"] == "fedprox" and status["federated"]["proximal-mu"] == 0.1


def test_group_norm_federates_where_batchnorm_is_refused(tmp_path):
    """digits-mlp with model.norm=group: GroupNorm's weights are averaged like any others (no statistics)."""
    r = federate("digits-mlp", "model.norm=group", "train.lr=0.01", "--clients", 3, "--rounds", 2,
                 "--runs-dir", tmp_path / "runs", "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    run = Path(json.loads(r.stdout.strip().splitlines()[-1])["run"])
    status = json.loads((run / "status.json").read_text())
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["test_accuracy"] > status["federated"]["initial"]["test_accuracy"] + 0.2
    assert "norm: group" in (run / "recipe.yaml").read_text()


def test_private_federation_reports_each_clients_epsilon_from_the_accountant(tmp_path):
    """--privacy epsilon=8: DP-SGD on each client; every client's ε (over all the rounds it took part in) is in
    each round's row and the report, stays within the budget, and is Opacus' accountant over its steps."""
    from danlu.training.privacy import epsilon_of

    r = federate("digits-mlp", "model.norm=group", "model.hidden=[32]", "train.batch_size=16", "--clients", 3,
                 "--rounds", 2, "--fraction", 0.67, "--privacy", "epsilon=8", "--runs-dir", tmp_path / "runs",
                 "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    run = Path(json.loads(r.stdout.strip().splitlines()[-1])["run"])
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(set(row["client_epsilon"]) == set(row["client_samples"]) for row in rows)  # 2 of 3 clients a round
    assert rows[0]["epsilon"] <= rows[1]["epsilon"] <= 8.0 + 1e-6
    p = json.loads((run / "report.json").read_text())["privacy"]
    assert p["target_epsilon"] == 8.0 and p["epsilon"] == max(c["epsilon"] for c in p["per_client"].values())
    steps_per_round = {}
    for pid, c in p["per_client"].items():
        rounds_in = sum(pid in row["client_samples"] for row in rows)
        steps_per_round.setdefault(rounds_in, set()).add(c["steps"] / rounds_in)
        assert c["delta"] == pytest.approx(1 / (10 * c["samples"]))
        assert c["epsilon"] == pytest.approx(epsilon_of(p["noise_multiplier"], 16 / c["samples"], c["steps"],
                                                        c["delta"], "rdp"), rel=1e-9)
    if 1 in steps_per_round and 2 in steps_per_round:  # a client sampled once spent less than one sampled twice
        once = min(c["epsilon"] for pid, c in p["per_client"].items()
                   if sum(pid in row["client_samples"] for row in rows) == 1)
        assert once < p["epsilon"]
    assert "Differential privacy" in (run / "report.md").read_text()


def test_private_federation_without_noise_finishes_with_an_infinite_epsilon(tmp_path):
    """--privacy noise_multiplier=0 (clipping only) once ended in an internal error after the first round: ε = ∞
    is not JSON. Rows and the report now record None and report.md says there is no guarantee."""
    r = federate("digits-mlp", "model.norm=group", "model.hidden=[32]", "train.batch_size=16", "--clients", 2,
                 "--rounds", 1, "--privacy", "noise_multiplier=0", "--runs-dir", tmp_path / "runs", "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    run = Path(json.loads(r.stdout.strip().splitlines()[-1])["run"])
    row = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert "epsilon" not in row and set(row["client_epsilon"].values()) == {None}
    p = json.loads((run / "report.json").read_text())["privacy"]
    assert p["epsilon"] is None and all(c["epsilon"] is None for c in p["per_client"].values())
    assert "ε = ∞ (no noise: no privacy guarantee)" in (run / "report.md").read_text()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("args, message", [
    (["--clients", 5000], "more than the"),
    ([], "model.norm=group"),  # digits-mlp as built in: BatchNorm is refused, the fix named
    (["--superlink", "UNREACHABLE"], "cannot reach a SuperLink"),
    (["--privacy", "epsilon=1e-9"], "cannot be reached by every client"),
    (["--privacy", "epsilon=3,delta=0.01"], "not below 1/N"),
    (["--privacy", "epsilon=3", "--strategy", "fedprox"], "proximal term"),
    (["--privacy", "epsilon"], "KEY=VALUE"),
])
def test_bad_input_in_flowers_environment_exits_2_and_writes_nothing(tmp_path, args, message):
    args = [f"127.0.0.1:{_free_port()}" if a == "UNREACHABLE" else a for a in args]
    extra = [NO_BN] if "model.norm=group" != message else []
    r = federate("digits-mlp", *extra, *args, "--runs-dir", tmp_path / "runs")
    assert r.returncode == 2 and message in r.stderr, r.stderr[-2000:]
    assert not (tmp_path / "runs").exists()



def test_a_model_fit_to_data_is_refused(tmp_path):
    """Patch whitening is fit before a new run's first step (danlu/training/fit_to_data.py); no client runs that
    seam, so the federated model would have kept random frozen first-layer filters without a word."""
    r = federate("digits-mlp", "model={name: fast_resnet, whiten: 2, stem: 8, widths: [8, 8], norm: group, "
                 "norm_groups: 4}", "tune=null", "--runs-dir", tmp_path / "runs")
    assert r.returncode == 2 and "model.whiten=0" in r.stderr, r.stderr[-2000:]
    assert not (tmp_path / "runs").exists()

# ---------------------------------------------------------------- Flower: a real SuperLink and two SuperNodes


def _wait_for_port(port: int, procs: list, deadline: float) -> None:
    while time.monotonic() < deadline:
        for p in procs:
            assert p.poll() is None, f"{p.args[0]} exited with {p.returncode}"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"nothing listened on 127.0.0.1:{port} in time")


def test_a_superlink_and_two_supernodes_federate_digits(tmp_path):
    bin_dir = flower_python().parent
    env = flower_env()
    link_port, node_ports = _free_port(), [_free_port(), _free_port()]
    logs = tmp_path / "logs"
    logs.mkdir()
    procs: list[subprocess.Popen] = []

    def start(name: str, *cmd: str) -> None:
        out = open(logs / f"{name}.log", "w")  # noqa: SIM115 - closed with the process below
        procs.append(subprocess.Popen([str(bin_dir / cmd[0]), *cmd[1:]], stdout=out, stderr=subprocess.STDOUT,
                                      env=env, cwd=tmp_path))

    try:
        start("superlink", "flower-superlink", "--insecure", "--disable-runtime-dependency-installation",
              "--host", "127.0.0.1", "--port", str(link_port), "--database", str(tmp_path / "link.db"))
        _wait_for_port(link_port, procs, time.monotonic() + 90)
        for i, port in enumerate(node_ports):
            start(f"supernode{i}", "flower-supernode", "--insecure", "--superlink", f"127.0.0.1:{link_port}",
                  "--host", "127.0.0.1", "--port", str(port), "--node-config", f"partition-id={i} num-partitions=2")
        r = federate("digits-mlp", NO_BN, "train.lr=0.01", "--clients", 2, "--rounds", 2, "--local-epochs", 1,
                     "--superlink", f"127.0.0.1:{link_port}", "--runs-dir", tmp_path / "runs", "--json", timeout=420)
        tails = "\n".join(f"--- {f.name}\n{f.read_text()[-1500:]}" for f in sorted(logs.iterdir()))
        assert r.returncode == 0, r.stderr[-3000:] + tails
        run = Path(json.loads(r.stdout.strip().splitlines()[-1])["run"])
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        status = json.loads((run / "status.json").read_text())
        assert status["status"] == "done" and [row["round"] for row in rows] == [1, 2]
        assert all(row["clients"] == 2 and len(row["client_samples"]) == 2 for row in rows)  # both SuperNodes
        assert rows[-1]["test_accuracy"] > status["federated"]["initial"]["test_accuracy"] + 0.2
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
            if p.stdout:
                p.stdout.close()
