"""Metrics computed in torch from the confusion matrix (classification) or residuals (regression).

scikit-learn is the oracle in tests/test_metrics.py; these run on whatever device holds the outputs.
"""

from __future__ import annotations

import torch


def confusion_matrix(y_true: torch.Tensor, y_pred: torch.Tensor, num_classes: int) -> torch.Tensor:
    """cm[i, j] = how many samples of true class i were predicted as j."""
    idx = y_true.long() * num_classes + y_pred.long()
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _safe_div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.where(b > 0, a / b.clamp_min(1), torch.zeros_like(a))


def classification_metrics(cm: torch.Tensor) -> dict[str, float | list[float]]:
    """Accuracy, per-class and macro precision/recall/F1; binary adds the positive class (index 1)."""
    cm = cm.double()
    tp = cm.diag()
    predicted = cm.sum(0)
    actual = cm.sum(1)
    precision = _safe_div(tp, predicted)
    recall = _safe_div(tp, actual)
    f1 = _safe_div(2 * precision * recall, precision + recall)
    total = cm.sum()
    # macro averages over the classes that occur in the labels or the predictions (scikit-learn's rule):
    # a class with no test rows that is never predicted has no precision or recall to average in
    seen = (actual + predicted) > 0

    def macro(values: torch.Tensor) -> float:
        return float(values[seen].mean()) if bool(seen.any()) else 0.0

    out: dict[str, float | list[float]] = {
        "accuracy": float(tp.sum() / total) if total > 0 else 0.0,
        "precision_macro": macro(precision),
        "recall_macro": macro(recall),
        "f1_macro": macro(f1),
        "per_class_precision": precision.tolist(),
        "per_class_recall": recall.tolist(),
        "per_class_f1": f1.tolist(),
        "support": actual.long().tolist(),
    }
    if cm.shape[0] == 2:
        out["precision"], out["recall"], out["f1"] = float(precision[1]), float(recall[1]), float(f1[1])
    return out


def regression_metrics(y_true: torch.Tensor, y_pred: torch.Tensor) -> dict[str, float]:
    """MSE, MAE and R² (averaged over targets, as scikit-learn's 'uniform_average')."""
    y_true, y_pred = y_true.double().reshape(len(y_true), -1), y_pred.double().reshape(len(y_pred), -1)
    resid = y_true - y_pred
    ss_res = (resid**2).sum(0)
    ss_tot = ((y_true - y_true.mean(0)) ** 2).sum(0)
    r2 = torch.where(ss_tot > 0, 1 - ss_res / ss_tot.clamp_min(1e-300),
                     torch.where(ss_res == 0, torch.ones_like(ss_res), torch.zeros_like(ss_res)))
    return {"mse": float((resid**2).mean()), "mae": float(resid.abs().mean()), "r2": float(r2.mean())}


LOWER_IS_BETTER = ("loss", "mse", "mae")


def higher_is_better(metric: str) -> bool:
    return not any(metric.endswith(s) for s in LOWER_IS_BETTER)


def headline(metrics: dict) -> dict[str, float]:
    """The scalar metrics only (what report.json's "metrics" object holds)."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}
