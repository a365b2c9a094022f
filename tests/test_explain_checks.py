"""The explanations mean something (on a small CNN trained on 8x8 digits):

- model randomization (Adebayo et al. 2018): a trained model's maps and those of the same architecture
  with fresh weights rank pixels differently;
- deletion / insertion (RISE): the most-attributed pixels move the class probability faster than random ones
  (for every image method but plain Grad-CAM, whose map is too coarse on 8x8 images: a strict xfail);
- completeness: integrated gradients' attributions add up to f(x) - f(baseline) within 5 % at the default steps.
"""

from __future__ import annotations

import pytest
import torch

from danlu.explanations.api import Explainer
from danlu.explanations.checks import deletion_insertion, mean_spearman, random_maps
from danlu.explanations.images import attribute_images

N = 100  # test images per check


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from danlu.api import train
    from danlu.explanations.views import load_split

    run = train("digits-mlp", ["model={name: cnn, padding: same, channels: [16, 32]}", "train.epochs=8"],
                runs_dir=tmp_path_factory.mktemp("runs"), progress=False, plots=False).run
    explainer = Explainer.load(run)
    part, _ = load_split(explainer, None, "test")
    x = explainer.predictor.normalize(part.x[:N])
    targets = explainer.predictor.forward(x).argmax(1)
    return explainer, x, targets, part.x[:N]


def _maps(explainer, model, x, targets, method):
    return attribute_images(model, x, targets, method, model_name="cnn", baseline=explainer.baseline())


# Guided Grad-CAM on 8x8 digits: mean Spearman 0.429 between the trained and the re-initialized model's maps
# (over the pairs where both maps are non-empty; 2026-12-03): its guided-backpropagation factor follows the
# input's edges whatever the weights, as Adebayo et al. found. A strict xfail so the day it passes is noticed.
GUIDED_RANDOMIZATION = pytest.param("guided_gradcam", marks=pytest.mark.xfail(
    strict=True, reason="guided backpropagation depends little on the weights (Adebayo et al. 2018)"))


@pytest.mark.parametrize("method", ["gradcam", GUIDED_RANDOMIZATION, "ig"])
def test_maps_of_a_randomized_model_differ(trained, method):
    from danlu.prepare import build_model

    explainer, x, targets, _ = trained
    torch.manual_seed(1234)
    fresh = build_model(explainer.predictor.recipe, explainer.schema).eval()
    mine, _ = _maps(explainer, explainer.predictor.model, x, targets, method)
    theirs, _ = _maps(explainer, fresh, x, targets, method)
    # an empty map (Guided Grad-CAM where Grad-CAM is nowhere positive: 6 of these 100 for the trained model,
    # more for the random one) has no ranking: such pairs are left out rather than counted as differing
    mine_ranks, theirs_ranks = mine.flatten(1).std(1) > 0, theirs.flatten(1).std(1) > 0
    assert mine_ranks.float().mean() >= 0.9, f"{method}: {int((~mine_ranks).sum())} of {N} trained maps are empty"
    ranked = mine_ranks & theirs_ranks
    assert ranked.sum() >= 30, f"{method}: only {int(ranked.sum())} pairs of maps to compare"
    rho = mean_spearman(mine[ranked], theirs[ranked])
    assert rho < 0.3, f"{method}: mean Spearman {rho:.3f} between trained and randomized maps"
    assert mean_spearman(mine[ranked], mine[ranked]) == pytest.approx(1.0)  # the measure sees identical maps


# Plain Grad-CAM on 8x8 digits: its map is the features' 2x2 grid upsampled, and ordering pixels by it is no
# better than random (deletion AUC 0.470 vs random 0.452, insertion 0.392 vs 0.432 for its rectified map;
# 100 test images, 2026-12-03; the last conv's pre-activation 4x4 map: 0.495 / 0.311). Guided Grad-CAM,
# what auto uses on danlu's CNNs, passes. Kept as a strict xfail so the day plain Grad-CAM passes is noticed.
GRADCAM_DELETION = pytest.param("gradcam", marks=pytest.mark.xfail(strict=True, reason="coarse 2x2 map on 8x8 digits"))


@pytest.mark.parametrize("method", ["guided_gradcam", "ig", "saliency", "occlusion", GRADCAM_DELETION])
def test_deletion_and_insertion_beat_random_order(trained, method):
    explainer, x, targets, _ = trained
    model = explainer.predictor.model
    maps, _ = _maps(explainer, model, x, targets, method)
    deletion, insertion = deletion_insertion(model, x, targets, maps, explainer.baseline())
    rand_del, rand_ins = deletion_insertion(model, x, targets, random_maps(tuple(maps.shape)), explainer.baseline())
    assert insertion.mean() > rand_ins.mean(), (method, insertion.mean(), rand_ins.mean())
    assert deletion.mean() < rand_del.mean(), (method, deletion.mean(), rand_del.mean())


def test_integrated_gradients_are_complete_at_the_default_steps(trained):
    explainer, x, targets, pixels = trained
    ig = Explainer(explainer.predictor, "ig")
    records = ig.images(pixels, [f"test[{i}]" for i in range(len(pixels))])
    errors = torch.tensor([r["completeness_error"] for r in records])
    assert (errors < 0.05).float().mean() >= 0.95 and errors.median() < 0.02, errors.max()
    assert all("warning" in r for r, e in zip(records, errors.tolist(), strict=True) if e > 0.05)
    assert "completeness_error" not in explainer.images(pixels[:2], ["a", "b"])[0]  # Grad-CAM has none
