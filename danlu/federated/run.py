"""``danlu federate``: validate everything, then simulate the federation in this process (or submit it to a
SuperLink), and hand back the finished run folder like ``danlu train`` does."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from danlu.errors import DanluError


def federate(recipe: str | Path = "digits-mlp", overrides: list[str] | tuple[str, ...] = (), *, clients: int = 10,
             rounds: int = 10, fraction: float = 1.0, local_epochs: float = 1.0, split: str = "iid",
             strategy: str = "fedavg", mu: float = 0.01, runs_dir: Path | None = None,
             data_dir: Path | None = None, run_dir: Path | None = None, superlink: str | None = None,
             privacy: str | None = None, progress: bool = True) -> Any:
    """Federated training of ``recipe``'s model over ``clients`` shares of its training data."""
    from danlu.api import TrainResult
    from danlu.recipe import load_recipe

    t0 = time.perf_counter()
    say = (lambda msg: print(msg, flush=True)) if progress else (lambda msg: None)
    rec = load_recipe(str(recipe), [*overrides, *privacy_overrides(privacy)]).with_absolute_paths()
    fed = _federation(rec, clients, rounds, fraction, local_epochs, split, strategy, mu, data_dir, run_dir).check()
    if superlink is not None:
        from danlu.federated.deploy import check_reachable

        check_reachable(superlink)
    from danlu.federated import require_flower

    require_flower()
    check_data(fed)  # too many clients, BatchNorm, an empty share: refused before any file is written
    if rec.train.privacy is not None:  # DP-SGD on every client: σ fixed for all of them, refusals first
        plan_privacy(fed, rec, say)
    if superlink is not None:
        from danlu.federated.deploy import submit

        path = submit(fed, superlink, runs_dir, say)
    else:
        import logging

        from danlu.federated.client import app as client_app
        from danlu.federated.server import run_federation
        from danlu.federated.simulation import InProcessGrid

        logging.getLogger("flwr").setLevel(logging.ERROR)  # the per-round lines above say what its INFO said
        grid = InProcessGrid(client_app, fed.run_config(), fed.clients)
        path = run_federation(grid, fed, say, runs_dir)
    report = json.loads((path / "report.json").read_text(encoding="utf-8"))
    return TrainResult(path, report["metrics"], time.perf_counter() - t0, report)


def _federation(rec: Any, clients: int, rounds: int, fraction: float, local_epochs: float, split: str,
                  strategy: str, mu: float, data_dir: Path | None, run_dir: Path | None) -> Any:
    from danlu.federated.settings import Federation

    return Federation(recipe_json=json.dumps(rec.to_dict()), clients=clients, rounds=rounds, fraction=fraction,
                      local_epochs=local_epochs, split=split, strategy=strategy, proximal_mu=mu,
                      run_dir=str(Path(run_dir).resolve()) if run_dir else "",
                      data_dir=str(Path(data_dir).resolve()) if data_dir else "")


def privacy_overrides(spec: str | None) -> list[str]:
    """``--privacy epsilon=3,max_grad_norm=1`` → ``train.privacy.epsilon=3 train.privacy.max_grad_norm=1``."""
    if spec is None:
        return []
    items = [p.strip() for p in str(spec).split(",") if p.strip()]
    if not items or any("=" not in p for p in items):
        raise DanluError(f"--privacy {spec}: expected KEY=VALUE pairs",
                         hint="e.g. --privacy epsilon=3, or --privacy noise_multiplier=1.1,max_grad_norm=1,delta=auto")
    return [f"train.privacy.{p}" for p in items]


def plan_privacy(fed: Any, rec: Any, say: Any) -> None:
    """Calibrate one σ for all clients (a target ε must hold for each even if sampled every round), check the
    model trains privately, and give the clients the recipe with that σ."""
    from danlu.federated.local import build_model, labels_of, prepared
    from danlu.federated.private import client_recipe_json, plan, share_sizes
    from danlu.training.privacy import check_model

    splits, schema, recipe = prepared(fed.recipe_json, fed.data_dir or None)
    if hasattr(splits.train, "stream_loader"):
        raise DanluError("--privacy needs the in-memory loader (Poisson sampling draws from a client's whole share)",
                         hint="set data.loader=memory")
    check_model(build_model(recipe, schema), recipe.model.name)
    dp = plan(fed, recipe, share_sizes(labels_of(splits.train), fed, recipe.seed))
    fed.recipe_json = client_recipe_json(fed.recipe_json, dp)
    fed.dp_target_epsilon = float(dp["target_epsilon"] or 0.0)
    say(f"privacy: DP-SGD on every client, σ = {dp['noise_multiplier']:.4f}, C = {dp['max_grad_norm']:g}; a client "
        f"sampled in all {fed.rounds} rounds would reach ε = {dp['worst_case_epsilon']:.3f} ({dp['accountant']})")


def check_data(fed: Any) -> None:
    """Load the data and model once (the simulation reuses them) and refuse what cannot federate."""
    from danlu.federated.local import build_model, labels_of, prepared
    from danlu.federated.partition import partition

    splits, schema, recipe = prepared(fed.recipe_json, fed.data_dir or None)
    build_model(recipe, schema)
    if len(splits.test) == 0:
        raise DanluError("the recipe's data has no test split: the server scores the global model on it each round",
                         hint="set data.test_fraction above 0")
    partition(labels_of(splits.train), fed.clients, fed.split, seed=recipe.seed)
