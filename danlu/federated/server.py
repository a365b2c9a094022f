"""danlu's Flower ServerApp: FedAvg or FedProx over the clients, danlu's evaluation of the global model.

The run folder is a normal danlu run: the global model after the last round (never picked by its test score),
one metrics.jsonl row per round (global test metrics, the sampled clients and their sample counts), then the
usual report, plots and parity sample, plus plots/accuracy_by_round.png.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg, FedProx

from danlu.federated.local import build_model, prepared, score
from danlu.federated.settings import Federation

app = ServerApp()


class _RecordsClients:
    """Keeps who trained in the last round and on how many samples (Flower aggregates that away)."""

    last_clients: list[dict[str, Any]]
    privacy: dict[str, dict[str, Any]]  # partition → its latest ε, δ, steps (DP clients only)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> Any:
        replies = list(replies)
        self.last_clients = []
        for m in replies:
            if m.has_error():
                raise RuntimeError(f"client {m.metadata.src_node_id} failed in round {server_round}: "
                                   f"{m.error.reason}")
            r = m.content["metrics"]
            client = {"partition": int(r["partition-id"]), "samples": int(r["num-examples"]),
                      "train_loss": float(r["train_loss"])}
            if "dp-epsilon" in r:  # the client's ε over all its DP steps so far (danlu/federated/private.py)
                client.update(epsilon=float(r["dp-epsilon"]), delta=float(r["dp-delta"]), steps=int(r["dp-steps"]),
                              sample_rate=float(r["dp-sample_rate"]))
                self.privacy[str(client["partition"])] = {k: client[k] for k in
                                                          ("epsilon", "delta", "steps", "sample_rate", "samples")}
            self.last_clients.append(client)
        self.last_clients.sort(key=lambda c: c["partition"])
        return super().aggregate_train(server_round, replies)


class RecordingFedAvg(_RecordsClients, FedAvg):
    pass


class RecordingFedProx(_RecordsClients, FedProx):
    pass


def make_strategy(fed: Federation) -> _RecordsClients:
    common = {"fraction_train": fed.fraction, "fraction_evaluate": 0.0, "min_train_nodes": 1,
              "min_evaluate_nodes": 0, "min_available_nodes": fed.clients}
    strategy = RecordingFedProx(proximal_mu=fed.proximal_mu, **common) if fed.strategy == "fedprox" else \
        RecordingFedAvg(**common)
    strategy.privacy = {}
    return strategy


def run_federation(grid: Grid, fed: Federation, say: Callable[[str], None] = print,
                   runs_dir: Path | None = None) -> Path:
    """Drive ``fed.rounds`` rounds on ``grid`` and leave a finished run folder; returns its path."""
    from danlu.evaluation import evaluate
    from danlu.federated.plot import accuracy_by_round
    from danlu.runs.lifecycle import environment, fail_run, finish_run, start_run

    splits, schema, recipe = prepared(fed.recipe_json, fed.data_dir or None)
    model = build_model(recipe, schema)
    summary = fed.summary()
    run = start_run(recipe, schema, environment(str(recipe.train.device), flwr=_flwr_version()), splits.artifacts,
                    runs_dir=runs_dir, run_dir=Path(fed.run_dir) if fed.run_dir else None, epoch=0,
                    epochs=fed.rounds, resumable=False, federated=summary)
    say(f"run: {run.path}")
    say(f"federation: {fed.clients} clients ({fed.split}), {fed.per_round} per round, {fed.rounds} rounds of "
        f"{fed.local_epochs:g} local epoch(s), {fed.strategy}; server test split {len(splits.test)}")
    strategy = make_strategy(fed)
    initial: dict[str, float] = {}
    clock = [time.perf_counter()]

    def evaluate_fn(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        model.load_state_dict(arrays.to_torch_state_dict())
        metrics = {f"test_{k}": v for k, v in score(model, splits.test, schema, recipe).items()}
        if server_round == 0:
            initial.update(metrics)
            say("round 0 (initial model): " + _line(metrics))
            clock[0] = time.perf_counter()
            return MetricRecord(metrics)
        clients = strategy.last_clients
        samples = sum(c["samples"] for c in clients)
        row = {"epoch": server_round, "round": server_round,
               "train_loss": sum(c["train_loss"] * c["samples"] for c in clients) / max(samples, 1),
               **metrics, "clients": len(clients), "samples": samples,
               "client_samples": {str(c["partition"]): c["samples"] for c in clients},
               "round_s": round(time.perf_counter() - clock[0], 3)}
        if strategy.privacy:  # this round's clients' ε, and the largest any client has spent so far
            from danlu.training.privacy import recorded_epsilon

            row["client_epsilon"] = {str(c["partition"]): recorded_epsilon(c["epsilon"]) for c in clients}
            if (eps := recorded_epsilon(max(c["epsilon"] for c in strategy.privacy.values()))) is not None:
                row["epsilon"] = eps
        clock[0] = time.perf_counter()
        run.append_metrics(row)
        run.save_model(model, {"epoch": server_round, "round": server_round, **metrics})
        run.set_status("training", epoch=server_round, epochs=fed.rounds, resumable=False, federated=summary)
        say(f"round {server_round}/{fed.rounds}: {len(clients)} clients, {samples} samples, " + _line(metrics)
            + f" ({row['round_s']:.1f} s)")
        return MetricRecord(metrics)

    # Flower samples each round's clients with the module-level `random`: seeding it makes a simulation (fixed
    # node ids) pick the same clients every time; a deployed SuperLink's node ids are its own, so there it only
    # fixes the draw, not who is drawn
    random.seed(recipe.seed)
    with run.lock():
        try:
            strategy.start(grid=grid, initial_arrays=ArrayRecord(_cpu_state(model)), num_rounds=fed.rounds,
                           timeout=fed.timeout_s, train_config=ConfigRecord(), evaluate_fn=evaluate_fn)
        except BaseException as e:
            fail_run(run, e, "training")
            raise
        done = {"epochs": fed.rounds, "best_epoch": fed.rounds, "stopped_early": False, "resumable": False,
                "federated": {**summary, "initial": initial}}
        if strategy.privacy:  # report.json/.md's privacy section (evaluation reads it from status.json)
            from danlu.federated.private import client_steps
            from danlu.federated.private import summary as dp_summary

            cfg = recipe.train.privacy
            dp = {"noise_multiplier": cfg.noise_multiplier, "accountant": cfg.accountant,
                  "max_grad_norm": cfg.max_grad_norm, "target_epsilon": fed.dp_target_epsilon or None}
            smallest = min(c["samples"] for c in strategy.privacy.values())
            done["privacy"] = dp_summary(recipe, dp, strategy.privacy,
                                         fed.rounds * client_steps(recipe, smallest, fed.local_epochs)[1])
        run.load_model(model)
        run.set_status("evaluating", **done)
        notes = [*splits.notes, f"federated: {fed.clients} clients ({fed.split} split), {fed.per_round} per round, "
                 f"{fed.rounds} rounds, {fed.local_epochs:g} local epoch(s), {fed.strategy}; the model is the "
                 "global model after the last round"]
        try:
            accuracy_by_round(run.history(), run.path / "plots" / "accuracy_by_round.png", initial)
            evaluate(run, recipe, schema, model, splits.test, "test", notes=notes, plots=True, parity=True)
        except BaseException as e:
            fail_run(run, e, "evaluation", **done)
            raise
        finish_run(run, "done", **done)
    return run.path


def _cpu_state(model: Any) -> dict[str, Any]:
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def _line(metrics: dict[str, float]) -> str:
    keys = [k for k in ("test_accuracy", "test_loss") if k in metrics] or list(metrics)[:2]
    return "  ".join(f"{k} {metrics[k]:.4f}" for k in keys)


def _flwr_version() -> str:
    import flwr

    return getattr(flwr, "__version__", "?")


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Entry point when a SuperLink runs this app (``flwr run``)."""
    run_federation(grid, Federation.from_run_config(context.run_config), say=lambda m: print(m, flush=True))
