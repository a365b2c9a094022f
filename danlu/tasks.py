"""What differs between classification and regression: the loss and how outputs become predictions."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from danlu.metrics import classification_metrics, confusion_matrix, regression_metrics
from danlu.schema import Schema


def loss_fn(schema: Schema, label_smoothing: float = 0.0):
    """Cross-entropy on logits, or MSE on standardized targets (so the lr does not depend on units)."""
    if schema.task == "classification":
        def ce(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(out.float(), y, label_smoothing=label_smoothing)

        return ce
    mean = torch.tensor(schema.target_mean or [0.0])
    std = torch.tensor(schema.target_std or [1.0])

    def mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        m, s = mean.to(out.device), std.to(out.device)
        return F.mse_loss(out.float(), (y.float().reshape(out.shape) - m) / s)

    return mse


def to_predictions(out: torch.Tensor, schema: Schema) -> torch.Tensor:
    """Class probabilities [N, C], or regression values in the target's own units [N, T]."""
    if schema.task == "classification":
        return torch.softmax(out.float(), dim=1)
    m = torch.tensor(schema.target_mean or [0.0], device=out.device)
    s = torch.tensor(schema.target_std or [1.0], device=out.device)
    return out.float() * s + m


def score(preds: torch.Tensor, y: torch.Tensor, schema: Schema) -> dict:
    """Full metrics for predictions (from ``to_predictions``) against targets."""
    if schema.task == "classification":
        cm = confusion_matrix(y.cpu(), preds.argmax(1).cpu(), schema.num_outputs)
        out = classification_metrics(cm)
        out["confusion_matrix"] = cm.tolist()
        return out
    return regression_metrics(y.cpu(), preds.cpu())
