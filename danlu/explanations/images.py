"""Attribution maps for image models: Grad-CAM and Guided Grad-CAM on the declared layer, integrated
gradients, saliency and occlusion, each as one [H, W] map per image at the model's input size (channels summed)."""

from __future__ import annotations

import torch
from torch import nn

IG_STEPS = 32  # completeness within 5 % on the built-in image models at this many steps (tests/test_explain_checks.py)
IG_BATCH = 256  # interpolated images through the model at a time


def black_baseline(normalize, shape: tuple[int, ...]) -> torch.Tensor:
    """A black image in the model's normalized space: the 'nothing there' an attribution is measured from."""
    return normalize(torch.zeros(1, *shape, dtype=torch.uint8))


def gradcam_layer(model: nn.Module, model_name: str) -> nn.Module:
    from danlu.models.registry import GRADCAM_LAYERS

    return model.get_submodule(GRADCAM_LAYERS[model_name])


def attribute_images(model: nn.Module, x: torch.Tensor, targets: torch.Tensor, method: str, *,
                     model_name: str, baseline: torch.Tensor, steps: int = IG_STEPS
                     ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(signed maps [N, H, W], IG's convergence deltas [N] or None). (Guided) Grad-CAM maps are left
    un-rectified (the page and PNGs show their positive part) so sanity checks can rank them whole."""
    from danlu.explanations.inplace import no_inplace

    model.eval()
    with no_inplace(model):
        if method == "gradcam":
            from captum.attr import LayerAttribution, LayerGradCam

            cam = LayerGradCam(model, gradcam_layer(model, model_name)).attribute(x, target=targets)
            maps = LayerAttribution.interpolate(cam, tuple(x.shape[2:]), interpolate_mode="bilinear")
            return maps[:, 0].detach(), None
        if method == "guided_gradcam":
            import warnings

            from captum.attr import GuidedGradCam

            with warnings.catch_warnings():  # Captum announces its ReLU hooks, and that it made x need gradients
                warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
                warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require gradients")
                attr = GuidedGradCam(model, gradcam_layer(model, model_name)).attribute(x, target=targets)
            return attr.sum(1).detach(), None
        if method == "ig":
            from captum.attr import IntegratedGradients

            attr, delta = IntegratedGradients(model).attribute(
                x, baselines=baseline.expand_as(x), target=targets, n_steps=steps,
                internal_batch_size=max(steps, IG_BATCH), return_convergence_delta=True)
            return attr.sum(1).detach(), delta.detach()
        if method == "saliency":
            from captum.attr import Saliency

            return Saliency(model).attribute(x, target=targets, abs=False).sum(1).detach(), None
        if method == "occlusion":
            from captum.attr import Occlusion

            c, h, w = x.shape[1:]
            side = max(2, min(h, w) // 8)
            stride = max(1, side // 2)
            attr = Occlusion(model).attribute(x, sliding_window_shapes=(c, side, side), strides=(c, stride, stride),
                                              baselines=baseline, target=targets, perturbations_per_eval=16)
            return attr.sum(1).detach(), None
    raise ValueError(f"not an image method: {method}")
