"""DP-SGD on each client (``danlu federate --privacy``): Opacus on the client's local training, via
danlu.training.privacy.

What the ε means: per-client, sample-level (ε, δ)-DP of everything client i sends (hence of the global model)
with respect to adding or removing one example of client i's own data, over all the rounds it took part in.
Each local step is a Poisson-subsampled Gaussian mechanism (q_i = batch / n_i, noise σ, clipping C); the client
composes all its steps, across rounds, in Opacus' accountant (RDP by default). The server only averages, which
is post-processing. A target ε fixes one σ for every client before anything is written: the σ that keeps the
worst-placed client within ε even if it were sampled in every round; each client's ε reported is for the steps
it actually took.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from danlu.errors import RecipeError

GUARANTEE = ("per-client sample-level (ε, δ)-differential privacy: what client i sends (and so the global "
             "model) with respect to adding or removing one example of client i's data, over all the rounds it "
             "took part in (Poisson sampling, per-sample clipping and Gaussian noise on the client, Opacus)")
NOT_COVERED = [
    "which clients take part, and how many examples each holds (the sample counts are sent in the clear)",
    "user-level or client-level privacy: a client's whole data set is not hidden, only each single example",
    "the server's test split (it scores the global model without noise) and the data statistics computed "
    "before training (image normalization, class names)",
    "hyperparameter search and repeated federations: every federation spends its own ε",
]


def client_steps(recipe: Any, n: int, local_epochs: float) -> tuple[float, int]:
    """(sampling rate q, DP steps in one round) of a client with ``n`` examples."""
    from danlu.data.tensors import poisson_steps

    b = recipe.train.batch_size
    return b / n, max(1, round(local_epochs * poisson_steps(n, b)))


def plan(fed: Any, recipe: Any, sizes: list[int]) -> dict[str, Any]:
    """σ for every client, checked before anything is written: δ < 1/n_i, batch < n_i, a reachable ε."""
    from danlu.training.privacy import calibrate, epsilon_of, resolve_delta

    cfg = recipe.train.privacy
    if fed.strategy == "fedprox":
        raise RecipeError("--privacy with --strategy fedprox: the proximal term's gradient is not a per-sample "
                          "gradient, so Opacus' DP optimizer would drop it silently",
                          hint="use --strategy fedavg with --privacy")
    b = recipe.train.batch_size
    if b >= min(sizes):
        raise RecipeError(f"train.batch_size={b} is not below the {min(sizes)} examples of the smallest client: "
                          "DP-SGD needs sampling rate below 1",
                          hint=f"lower train.batch_size (e.g. {max(1, min(sizes) // 20)}) or use fewer --clients")
    per_size = {}
    for n in sorted(set(sizes)):
        q, steps = client_steps(recipe, n, fed.local_epochs)
        per_size[n] = (q, steps * fed.rounds, resolve_delta(cfg, n))
    if cfg.epsilon is not None:
        smallest = min(per_size)
        q, steps, delta = per_size[smallest]
        try:
            sigma = calibrate(cfg.epsilon, delta, q, steps, cfg.accountant)
            for q, steps, delta in per_size.values():  # the smallest client is usually the worst; make sure
                if epsilon_of(sigma, q, steps, delta, cfg.accountant) > cfg.epsilon * (1 + 1e-6):
                    sigma = calibrate(cfg.epsilon, delta, q, steps, cfg.accountant)
        except RecipeError as e:
            raise RecipeError(f"--privacy epsilon={cfg.epsilon:g} cannot be reached by every client over "
                              f"{fed.rounds} rounds of {fed.local_epochs:g} local epoch(s): {e.message}",
                              hint="raise epsilon, or lower --rounds, --local-epochs or train.batch_size") from None
    else:
        sigma = float(cfg.noise_multiplier)
    worst = max(epsilon_of(sigma, q, s, d, cfg.accountant) for q, s, d in per_size.values())
    return {"noise_multiplier": sigma, "target_epsilon": cfg.epsilon, "max_grad_norm": cfg.max_grad_norm,
            "accountant": cfg.accountant, "delta": cfg.delta, "worst_case_epsilon": worst}


def client_recipe_json(recipe_json: str, dp: dict[str, Any]) -> str:
    """The recipe the clients train with: the calibrated σ in place of the target ε (each client's δ stays its own)."""
    raw = json.loads(recipe_json)
    raw["train"]["privacy"] = {"noise_multiplier": dp["noise_multiplier"], "delta": dp["delta"],
                               "max_grad_norm": dp["max_grad_norm"], "accountant": dp["accountant"]}
    return json.dumps(raw)


def spent(recipe: Any, n: int, steps: int) -> dict[str, float]:
    """A client's ε, δ and q after ``steps`` DP steps in all (the accountant over its whole history)."""
    from danlu.training.privacy import epsilon_of, resolve_delta

    cfg = recipe.train.privacy
    delta, q = resolve_delta(cfg, n), recipe.train.batch_size / n
    return {"epsilon": epsilon_of(cfg.noise_multiplier, q, steps, delta, cfg.accountant), "delta": delta,
            "sample_rate": q}


def summary(recipe: Any, dp: dict[str, Any], clients: dict[str, dict[str, Any]], planned_steps: int) -> dict:
    """report.json's privacy block: the worst client's numbers (what report.md's table shows) and every client's."""
    from danlu.training.privacy import opacus_version, recorded_epsilon

    pid, worst = max(clients.items(), key=lambda kv: kv[1]["epsilon"])
    clients = {k: {**c, "epsilon": recorded_epsilon(c["epsilon"])} for k, c in clients.items()}
    return {"epsilon": recorded_epsilon(worst["epsilon"]), "delta": worst["delta"], "accountant": dp["accountant"],
            "opacus": opacus_version(), "noise_multiplier": dp["noise_multiplier"],
            "sample_rate": worst["sample_rate"], "steps": worst["steps"], "planned_steps": planned_steps,
            "max_grad_norm": dp["max_grad_norm"], "expected_batch_size": recipe.train.batch_size,
            "n_train": worst["samples"], "target_epsilon": dp["target_epsilon"], "sampling": "poisson",
            "guarantee": GUARANTEE, "not_covered": list(NOT_COVERED), "worst_client": int(pid),
            "per_client": clients,
            "notes": [f"privacy: ε is per client; the table shows the client with the largest ε (partition {pid}); "
                      f"every client's ε, δ and steps are in report.json (privacy.per_client)"]}


def share_sizes(labels: np.ndarray, fed: Any, seed: int) -> list[int]:
    from danlu.federated.partition import partition

    return [len(p) for p in partition(labels, fed.clients, fed.split, seed=seed)]
