"""Models: a registry from name to builder; every shape comes from the data schema."""

from danlu.models.registry import build, count_parameters, input_hints

__all__ = ["build", "count_parameters", "input_hints"]
