import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from danlu.metrics import classification_metrics, confusion_matrix, regression_metrics


@pytest.mark.parametrize("classes", [2, 3, 7])
def test_classification_metrics_match_sklearn(classes):
    rng = np.random.default_rng(classes)
    y = rng.integers(0, classes, 500)
    p = np.where(rng.random(500) < 0.7, y, rng.integers(0, classes, 500))
    cm = confusion_matrix(torch.from_numpy(y), torch.from_numpy(p), classes)
    assert cm.tolist() == skm.confusion_matrix(y, p, labels=range(classes)).tolist()
    m = classification_metrics(cm)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, p))
    for ours, avg in (("precision_macro", "macro"), ("recall_macro", "macro"), ("f1_macro", "macro")):
        fn = {"precision": skm.precision_score, "recall": skm.recall_score, "f1": skm.f1_score}[ours.split("_")[0]]
        assert m[ours] == pytest.approx(fn(y, p, average=avg, zero_division=0))
    if classes == 2:
        assert m["precision"] == pytest.approx(skm.precision_score(y, p))
        assert m["recall"] == pytest.approx(skm.recall_score(y, p))
        assert m["f1"] == pytest.approx(skm.f1_score(y, p))


def test_a_class_never_predicted_counts_as_zero_precision():
    y = torch.tensor([0, 1, 2, 2])
    p = torch.tensor([0, 1, 1, 1])
    m = classification_metrics(confusion_matrix(y, p, 3))
    assert m["per_class_precision"][2] == 0.0
    assert m["precision_macro"] == pytest.approx(skm.precision_score(y, p, average="macro", zero_division=0))


def test_a_class_absent_from_labels_and_predictions_is_left_out_of_macro_averages():
    y = torch.tensor([0, 0, 1, 1])
    p = torch.tensor([0, 1, 1, 1])
    m = classification_metrics(confusion_matrix(y, p, 3))  # class 2: no rows, never predicted
    for name in ("precision", "recall", "f1"):
        want = getattr(skm, f"{name}_score")(y, p, average="macro", zero_division=0)
        assert m[f"{name}_macro"] == pytest.approx(want)
    assert m["support"] == [2, 2, 0]


def test_regression_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(200, 2))
    p = y + rng.normal(scale=0.3, size=(200, 2))
    m = regression_metrics(torch.from_numpy(y), torch.from_numpy(p))
    assert m["mse"] == pytest.approx(skm.mean_squared_error(y, p))
    assert m["mae"] == pytest.approx(skm.mean_absolute_error(y, p))
    assert m["r2"] == pytest.approx(skm.r2_score(y, p))
