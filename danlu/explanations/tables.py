"""Per-column attributions for table rows, and the whole run's feature importance.

The model sees encoded columns (standardized numbers, one column per category); users think in the
schema's columns. Attributions are computed per encoded column and summed back to the schema's columns,
which keeps IG's completeness (the sum still equals f(x) - f(baseline)).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

TABLE_STEPS = 64  # a row is cheap; more steps give a tighter completeness delta
SHAP_SAMPLES = 300


def column_groups(schema) -> tuple[list[str], torch.Tensor]:
    """(the schema's column names, the group id of each encoded column [W])."""
    from danlu.data.tabular import encoder_for

    per_column = encoder_for(schema).column_features()
    used = set(per_column)  # in the table's own column order (the plan puts numbers before categories)
    names = [f for f in schema.features or [] if f in used] or list(dict.fromkeys(per_column))
    return names, torch.tensor([names.index(n) for n in per_column])


def training_mean(schema, train_x: torch.Tensor | None) -> torch.Tensor:
    """The encoded training mean [1, W]. Standardized numeric columns have mean 0 by construction; a
    category column's mean is its frequency, taken from the training split when it is given (else 0:
    'no category')."""
    width = schema.input_shape[0]
    if train_x is not None and len(train_x):
        return train_x.float().mean(0, keepdim=True)
    return torch.zeros(1, width)


def group_sum(attr: torch.Tensor, groups: torch.Tensor, n: int) -> torch.Tensor:
    """[N, W] → [N, n]: encoded columns summed into their schema column."""
    out = torch.zeros(attr.shape[0], n, dtype=attr.dtype)
    return out.index_add_(1, groups, attr)


def attribute_rows(model: nn.Module, x: torch.Tensor, targets: torch.Tensor, method: str, *,
                   baseline: torch.Tensor, groups: torch.Tensor, n_columns: int
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(attributions [N, columns], IG's convergence deltas [N] or None)."""
    from danlu.explanations.inplace import no_inplace

    model.eval()
    with no_inplace(model):
        if method == "ig":
            from captum.attr import IntegratedGradients

            attr, delta = IntegratedGradients(model).attribute(
                x, baselines=baseline.expand_as(x), target=targets, n_steps=TABLE_STEPS,
                return_convergence_delta=True)
            return group_sum(attr.detach(), groups, n_columns), delta.detach()
        if method == "shap":
            from captum.attr import KernelShap

            shap = KernelShap(model)
            rows = [shap.attribute(x[i:i + 1], baselines=baseline, target=int(targets[i]),
                                   feature_mask=groups[None], n_samples=SHAP_SAMPLES, perturbations_per_eval=64)
                    for i in range(len(x))]
            attr = torch.cat(rows).detach()
            # KernelShap gives every encoded column of a group the group's value: keep one per group
            first = torch.tensor([int((groups == g).nonzero()[0]) for g in range(n_columns)])
            return attr[:, first], None
        if method == "tree_shap":  # exact, from the trees themselves: sums to the margin with the bias
            contrib = torch.from_numpy(model.contributions(x.detach().float().cpu().numpy())).float()
            attr = contrib[torch.arange(len(x)), targets][:, :-1]
            return group_sum(attr, groups, n_columns), None
        if method == "saliency":
            from captum.attr import Saliency

            attr = Saliency(model).attribute(x, target=targets, abs=False).detach()
            return group_sum(attr * (x - baseline), groups, n_columns), None  # gradient x input
    raise ValueError(f"not a table method: {method}")


def permutation_importance(model: nn.Module, x: torch.Tensor, y: torch.Tensor, schema, groups: torch.Tensor,
                           n_columns: int, repeats: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray, float]:
    """(mean loss increase per schema column, its standard deviation over ``repeats``, the unshuffled loss).

    A column's encoded columns are shuffled together across rows, which breaks its link to the target
    while keeping its distribution; a column the model relies on makes the loss rise."""
    from danlu.tasks import loss_fn

    loss = loss_fn(schema)
    gen = torch.Generator().manual_seed(seed)
    model.eval()
    with torch.no_grad():
        base = float(loss(model(x), y))
        rises = np.zeros((repeats, n_columns))
        for r in range(repeats):
            for g in range(n_columns):
                cols = (groups == g).nonzero()[:, 0]
                shuffled = x.clone()
                shuffled[:, cols] = x[torch.randperm(len(x), generator=gen)][:, cols]
                rises[r, g] = float(loss(model(shuffled), y)) - base
    return rises.mean(0), rises.std(0), base
