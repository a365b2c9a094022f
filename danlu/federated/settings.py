"""What a federation is told: the keys of Flower's run config and node config that danlu's apps read.

Flower carries only flat str/int/float/bool values, so the recipe travels as its resolved JSON: every party
trains exactly the recipe the server validated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from danlu.errors import DanluError

STRATEGIES = ("fedavg", "fedprox")


@dataclass
class Federation:
    recipe_json: str
    clients: int
    rounds: int
    fraction: float
    local_epochs: float
    split: str = "iid"
    strategy: str = "fedavg"
    proximal_mu: float = 0.01
    run_dir: str = ""
    data_dir: str = ""
    timeout_s: float = 3600.0
    dp_target_epsilon: float = 0.0  # --privacy epsilon=…: the per-client budget σ was calibrated to (0: none)

    def check(self) -> Federation:
        """The bad inputs that need no data: refused before anything is loaded or written."""
        from danlu.errors import unknown_name
        from danlu.federated.partition import parse_split

        if self.clients < 1:
            raise DanluError(f"--clients {self.clients}: a federation needs at least one client",
                             hint="e.g. --clients 10")
        if self.rounds < 1:
            raise DanluError(f"--rounds {self.rounds}: at least one round", hint="e.g. --rounds 20")
        if not 0 < self.fraction <= 1:
            raise DanluError(f"--fraction {self.fraction} is outside (0, 1]: it is the share of clients "
                             "sampled each round", hint="e.g. --fraction 0.1 (10 % of the clients per round), "
                             "or --fraction 1 (all of them)")
        if not self.local_epochs > 0:
            raise DanluError(f"--local-epochs {self.local_epochs} must be positive", hint="e.g. --local-epochs 5")
        if self.strategy not in STRATEGIES:
            raise unknown_name("strategy", self.strategy, list(STRATEGIES))
        if self.strategy == "fedprox" and not self.proximal_mu > 0:
            raise DanluError(f"--mu {self.proximal_mu}: FedProx needs a positive proximal weight",
                             hint="e.g. --mu 0.01, or --strategy fedavg")
        parse_split(self.split)
        return self

    @property
    def per_round(self) -> int:
        """Clients sampled per round: max(C·K, 1), as McMahan et al. (2017) and Flower's FedAvg do."""
        return max(int(self.clients * self.fraction), 1)

    def run_config(self) -> dict[str, Any]:
        return {"recipe": self.recipe_json, "clients": self.clients, "rounds": self.rounds,
                "fraction": float(self.fraction), "local-epochs": float(self.local_epochs), "split": self.split,
                "strategy": self.strategy, "proximal-mu": float(self.proximal_mu), "run-dir": self.run_dir,
                "data-dir": self.data_dir, "timeout-s": float(self.timeout_s),
                "dp-target-epsilon": float(self.dp_target_epsilon)}

    @classmethod
    def from_run_config(cls, cfg: Any) -> Federation:
        return cls(recipe_json=str(cfg["recipe"]), clients=int(cfg["clients"]), rounds=int(cfg["rounds"]),
                   fraction=float(cfg["fraction"]), local_epochs=float(cfg["local-epochs"]),
                   split=str(cfg.get("split", "iid")), strategy=str(cfg.get("strategy", "fedavg")),
                   proximal_mu=float(cfg.get("proximal-mu", 0.01)), run_dir=str(cfg.get("run-dir", "")),
                   data_dir=str(cfg.get("data-dir", "")), timeout_s=float(cfg.get("timeout-s", 3600.0)),
                   dp_target_epsilon=float(cfg.get("dp-target-epsilon", 0.0)))

    def summary(self) -> dict[str, Any]:
        """What status.json records of the federation (the recipe is in recipe.yaml already)."""
        d = self.run_config()
        for key in ("recipe", "run-dir", "data-dir"):
            d.pop(key)
        return {"clients_per_round": self.per_round, **d}

    @property
    def recipe(self) -> Any:
        from danlu.recipe import load_recipe

        return load_recipe(base=json.loads(self.recipe_json))
