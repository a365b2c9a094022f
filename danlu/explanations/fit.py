"""Which attribution methods fit which model, and which output an explanation is about.

Kept free of torch and Captum: a wrong ``--method`` or ``--target`` is refused before anything loads.
"""

from __future__ import annotations

from typing import Any

from danlu.errors import DanluError, unknown_name

# Methods per data kind, "auto"'s choice first. Grad-CAM also needs a declared layer (models.registry).
KIND_METHODS: dict[str, tuple[str, ...]] = {
    "image": ("gradcam", "ig", "occlusion", "saliency"),
    "text": ("ig",),
    "tabular": ("ig", "shap", "saliency"),
}
NAMES = {"gradcam": "Grad-CAM", "ig": "integrated gradients", "occlusion": "occlusion", "saliency": "saliency",
         "shap": "KernelShap"}


def methods_for(model_name: str, kind: str) -> list[str]:
    """The methods that explain this model on this kind of data, the default first."""
    from danlu.models.registry import GRADCAM_LAYERS

    return [m for m in KIND_METHODS[kind] if m != "gradcam" or model_name in GRADCAM_LAYERS]


def choose_method(method: str, model_name: str, kind: str) -> str:
    """``auto`` → the model's default; a method that does not fit says which ones do."""
    from danlu.explanations import METHODS

    if method not in METHODS:
        raise unknown_name("method", method, METHODS)
    fits = methods_for(model_name, kind)
    if method == "auto":
        return fits[0]
    if method not in fits:
        why = ("it needs a convolutional feature map, and this model has none" if method == "gradcam"
               else f"it does not apply to {kind} data")
        raise DanluError(f"--method {method} does not fit model '{model_name}' on {kind} data: {why}",
                         hint=f"methods for this model: {', '.join(fits)} (or auto = {fits[0]})")
    return method


def target_index(target: Any, schema: Any) -> int | None:
    """The output a ``--target`` names (a class label, or a regression target's name); None = predicted."""
    if target is None or target == "":
        return None
    labels = schema.classes if schema.task == "classification" else (schema.targets or ["value"])
    names = [str(x) for x in labels]
    if str(target) in names:
        return names.index(str(target))
    raise unknown_name("target label", str(target), names)
