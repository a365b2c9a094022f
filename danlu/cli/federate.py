"""``danlu federate``: federated training on Flower (simulated in-process, or submitted to a SuperLink).

Kept apart from cli.py; Flower is imported only when the verb runs (it lives in its own environment).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from danlu.cli.output import print_json


def cmd_federate(a: argparse.Namespace) -> None:
    from danlu.federated.run import federate

    result = federate(a.recipe, a.overrides, clients=a.clients, rounds=a.rounds, fraction=a.fraction,
                      local_epochs=a.local_epochs, split=a.split, strategy=a.strategy, mu=a.mu,
                      runs_dir=a.runs_dir, data_dir=a.data_dir, run_dir=a.run_dir, superlink=a.superlink,
                      privacy=a.privacy, progress=not a.quiet)
    if a.json:
        print_json(result.as_json())
    else:
        print((result.run / "report.md").read_text(encoding="utf-8"))
        print(f"run folder: {result.run}  ({result.wall_s:.1f} s)")


def add_federate_verb(sub: argparse._SubParsersAction, common: Callable[[argparse.ArgumentParser], None]) -> None:
    f = sub.add_parser("federate", help="federated training on Flower: danlu federate RECIPE --clients K --rounds R")
    f.add_argument("recipe", help="built-in recipe name or YAML file; its train: block is each client's local training")
    f.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.optimizer=sgd train.lr=0.05")
    f.add_argument("--clients", type=int, default=10, help="K: simulated clients sharing the training data")
    f.add_argument("--rounds", type=int, default=10, help="R: federated rounds")
    f.add_argument("--fraction", type=float, default=1.0, help="C in (0, 1]: share of clients sampled per round")
    f.add_argument("--local-epochs", type=float, default=1.0, help="E: local epochs per round on each client")
    f.add_argument("--split", default="iid", help="iid | shards (2 label shards per client) | dirichlet:ALPHA")
    f.add_argument("--strategy", default="fedavg", help="fedavg | fedprox")
    f.add_argument("--mu", type=float, default=0.01, help="FedProx's proximal weight (with --strategy fedprox)")
    f.add_argument("--privacy", metavar="KEY=V,...", default=None,
                   help="DP-SGD on every client (Opacus): epsilon=3 (per-client budget over all rounds) or "
                        "noise_multiplier=1.1; also delta, max_grad_norm, accountant. Same as train.privacy.*")
    f.add_argument("--superlink", metavar="HOST:PORT", default=None,
                   help="submit to a running SuperLink's control API (e.g. 127.0.0.1:9093) instead of simulating")
    f.add_argument("--run-dir", default=None, help="the new run's folder (default: a fresh one under --runs-dir)")
    f.add_argument("--json", action="store_true", help="print one JSON object (run, metrics, wall_s) last")
    f.add_argument("--quiet", action="store_true", help="no per-round progress")
    common(f)
    f.set_defaults(func=cmd_federate)
