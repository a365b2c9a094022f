"""Which attribution methods fit which model, and which output an explanation is about.

Kept free of torch and Captum: a wrong ``--method`` or ``--target`` is refused before anything loads.
"""

from __future__ import annotations

from typing import Any

from danlu.errors import DanluError, unknown_name

# Methods per data kind, "auto"'s choice first. Grad-CAM also needs a declared layer, Guided Grad-CAM a model
# listed for it, and auto picks Guided Grad-CAM where it is listed (models.registry says why).
CAM_METHODS = ("gradcam", "guided_gradcam")
KIND_METHODS: dict[str, tuple[str, ...]] = {
    "image": ("gradcam", "guided_gradcam", "ig", "occlusion", "saliency"),
    "text": ("ig",),
    "tabular": ("ig", "shap", "saliency", "tree_shap"),
    "audio": ("occlusion",),  # time-frequency patches of the clip (explanations/audio.py)
}
# boosted trees: exact tree SHAP from LightGBM (pred_contrib); no gradients, so no IG or saliency
TREE_MODELS = ("lightgbm",)
NAMES = {"gradcam": "Grad-CAM", "guided_gradcam": "Guided Grad-CAM", "ig": "integrated gradients",
         "occlusion": "occlusion", "saliency": "saliency",
         "shap": "KernelShap", "tree_shap": "tree SHAP (LightGBM pred_contrib)"}


def methods_for(model_name: str, kind: str, options: dict | None = None) -> list[str]:
    """The methods that explain this model on this kind of data, the default first."""
    from danlu.models.registry import GRADCAM_LAYERS, GUIDED_GRADCAM_MODELS

    # guided backpropagation guides through ReLUs: a cnn built with model.activation=tanh has none
    guided = model_name in GUIDED_GRADCAM_MODELS and (options or {}).get("activation", "relu") == "relu"
    fits = [m for m in KIND_METHODS[kind] if (m != "gradcam" or model_name in GRADCAM_LAYERS)
            and (m != "guided_gradcam" or guided)]
    if "guided_gradcam" in fits:
        fits.insert(0, fits.pop(fits.index("guided_gradcam")))
    if model_name in TREE_MODELS:
        return ["tree_shap", "shap"]
    if model_name == "table_ensemble":  # no gradient passes its LightGBM member: the model-agnostic method only
        return ["shap"]
    fits = [m for m in fits if m != "tree_shap"]
    if model_name == "tabular_net":  # category codes pass through embeddings: no gradient reaches them
        fits.insert(0, fits.pop(fits.index("shap")))
    return fits


def choose_method(method: str, model_name: str, kind: str, options: dict | None = None) -> str:
    """``auto`` → the model's default; a method that does not fit says which ones do."""
    from danlu.explanations import METHODS

    if method not in METHODS:
        raise unknown_name("method", method, METHODS)
    fits = methods_for(model_name, kind, options)
    if method == "auto":
        return fits[0]
    if method not in fits:
        if method == "guided_gradcam" and "gradcam" in fits:
            why = ("guided backpropagation needs every ReLU as its own nn.ReLU module, and this model's are not "
                   "(or it has none: model.activation=tanh)")
        elif method in CAM_METHODS:
            why = "it needs a convolutional feature map, and this model has none"
        else:
            why = f"it does not apply to {kind} data"
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
