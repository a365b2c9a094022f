"""Models: a registry from name to builder; every shape comes from the data schema.

``build`` and friends are imported on first use, so ``danlu.models.specs`` (recipe validation)
never pays for torch.
"""

from typing import Any

__all__ = ["build", "count_parameters", "input_hints"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from danlu.models import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'danlu.models' has no attribute {name!r}")
