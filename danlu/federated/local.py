"""A client's local training and the server's scoring, both on danlu's own loop and evaluation code.

No Flower here: ``client`` and ``server`` translate Flower's messages into these calls, so the same code runs
in the in-process simulation and on a real SuperNode.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from danlu.errors import RecipeError
from danlu.recipe import Recipe, load_recipe


@functools.lru_cache(maxsize=4)
def prepared(recipe_json: str, data_dir: str | None) -> tuple[Any, Any, Recipe]:
    """(splits, schema, recipe), loaded once per process: a simulated federation's clients share one copy."""
    from danlu.prepare import prepare

    recipe = load_recipe(base=json.loads(recipe_json))
    splits, schema, _ = prepare(recipe, Path(data_dir) if data_dir else None)
    return splits, schema, recipe


def build_model(recipe: Recipe, schema: Any) -> nn.Module:
    """The recipe's architecture; a model holding BatchNorm is refused (its statistics must not be averaged)."""
    from danlu.models import build

    torch.manual_seed(recipe.seed)  # every party starts from the same weights even before the first broadcast
    model = build(recipe.model.name, recipe.model.options, schema, training=True)
    check_no_batchnorm(model, recipe.model.name)
    if getattr(model, "fits_to_data", False):  # its fit runs before a new run's first step, which no client has
        raise RecipeError(f"model {recipe.model.name} fits a layer to the data before training (model.whiten: patch "
                          "whitening), which federated training does not do: it would keep random frozen filters",
                          hint="federate without model.whiten (model.whiten=0)")
    return model


def check_no_batchnorm(model: nn.Module, model_name: str) -> None:
    """FedAvg over BatchNorm's running statistics mixes clients' input distributions blindly; refuse it and
    point at GroupNorm, whose only state is affine weights that average like any others."""
    from danlu.models.norm import batchnorm_layers, groupnorm_hint

    if batchnorm_layers(model):
        raise RecipeError(f"model {model_name} has BatchNorm layers: federated averaging would average their "
                          "running statistics across clients blindly, so danlu federate refuses them",
                          hint=groupnorm_hint(model_name) + " (mnist-cnn has no norm layers)")


def labels_of(split: Any) -> Any:
    import numpy as np

    return np.asarray(split.y if hasattr(split, "y") else split.labels)


def local_recipe(recipe: Recipe, epochs: float, seed: int) -> Recipe:
    """The recipe a client trains with: its own epochs and seed, no early stopping (nothing to stop on)."""
    raw = recipe.to_dict()
    raw["seed"] = seed
    raw["train"] = {**raw["train"], "epochs": epochs, "early_stop": None}
    raw.pop("tune", None)
    return load_recipe(base=raw)


class ProximalStep:
    """FedProx (Li et al. 2020): the supervised loss plus mu/2 · ||w - w_global||², which keeps a client's
    weights near the round's global model however skewed its data."""

    def __init__(self, inner: Any, model: nn.Module, mu: float):
        self.inner, self.mu = inner, mu
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.anchor = [p.detach().clone() for p in self.params]

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loss, out = self.inner(x, y)
        prox = sum(((p - a) ** 2).sum() for p, a in zip(self.params, self.anchor, strict=True))
        return loss + 0.5 * self.mu * prox, out


def train_locally(model: nn.Module, train: Any, schema: Any, recipe: Recipe, *, epochs: float, seed: int,
                  mu: float = 0.0) -> dict[str, float]:
    """Train ``model`` in place on a client's share with danlu's loop; returns the last epoch's row (with
    ``dp_steps``, the DP-SGD steps taken, when the recipe trains privately)."""
    from danlu.data.splits import Splits
    from danlu.training.loop import build_loop, fit

    rec = local_recipe(recipe, epochs, seed)
    empty = train.subset([])
    loop = build_loop(model, Splits(train, empty, empty), schema, rec)
    if mu > 0:
        loop.step = ProximalStep(loop.step, model, mu)
    fit(loop)
    row = dict(loop.history[-1])
    if loop.privacy is not None:
        row["dp_steps"] = loop.privacy.steps
    return row


def score(model: nn.Module, split: Any, schema: Any, recipe: Recipe) -> dict[str, float]:
    """Loss and metrics of the global model on a split, as danlu's evaluation computes them."""
    from danlu.inference import amp_dtype, evaluate_loader, make_loader, place_model, select_device
    from danlu.metrics import headline

    device = select_device(recipe.train.device)
    channels_last = place_model(model, schema, device, recipe.train.channels_last)
    loader = make_loader(split, schema, recipe, train=False, generator=None, device=device,
                         channels_last=channels_last)
    return headline(evaluate_loader(model, loader, schema, amp_dtype(device, recipe.train.amp)))
