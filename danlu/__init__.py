"""danlu (丹炉): from raw data to a trained, evaluated and served model.

    import danlu
    result = danlu.train("digits-mlp", ["train.epochs=5"])
    predictor = danlu.load_run(result.run)

Attributes are imported lazily so that ``import danlu`` (and the CLI's --help) stays fast.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "train": ("danlu.api", "train"),
    "evaluate": ("danlu.api", "evaluate"),
    "tune": ("danlu.tuning", "tune"),
    "load_recipe": ("danlu.recipe", "load_recipe"),
    "Recipe": ("danlu.recipe", "Recipe"),
    "Predictor": ("danlu.predictor", "Predictor"),
    "DanluError": ("danlu.errors", "DanluError"),
    "explain": ("danlu.explanations.api", "explain"),
}


def load_run(run: Any, runs_dir: Any = None) -> Any:
    """A Predictor for a finished run (a run folder path or a name under ./runs)."""
    from danlu.predictor import Predictor

    return Predictor.load(run, runs_dir)


def predict(run: Any, inputs: Any, top_k: int = 3) -> list[dict[str, Any]]:
    """Predict with a run: image paths (folders are expanded), bytes, arrays or PIL images; texts; or
    feature rows (lists, column: value dicts, "1.5,2,red" strings or CSV files). Unreadable images are
    left out with a warning, as ``danlu predict`` does."""
    return load_run(run).predict(inputs, top_k=top_k)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'danlu' has no attribute {name!r}")


__all__ = ["train", "evaluate", "tune", "predict", "explain", "load_run", "load_recipe", "Recipe", "Predictor",
           "DanluError"]
