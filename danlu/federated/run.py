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
             progress: bool = True) -> Any:
    """Federated training of ``recipe``'s model over ``clients`` shares of its training data."""
    from danlu.api import TrainResult
    from danlu.recipe import load_recipe

    t0 = time.perf_counter()
    say = (lambda msg: print(msg, flush=True)) if progress else (lambda msg: None)
    rec = load_recipe(str(recipe), list(overrides)).with_absolute_paths()
    fed = _federation(rec, clients, rounds, fraction, local_epochs, split, strategy, mu, data_dir, run_dir).check()
    if superlink is not None:
        from danlu.federated.deploy import check_reachable

        check_reachable(superlink)
    from danlu.federated import require_flower

    require_flower()
    check_data(fed)  # too many clients, BatchNorm, an empty share: refused before any file is written
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
