"""User-facing errors: what was wrong, where, and what to do about it.

The CLI prints a DanluError without a traceback and exits with code 2; any other exception is
a bug of ours (exit 1).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class DanluError(Exception):
    """A mistake in the user's input (recipe, data, arguments) with a hint on how to fix it."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class RecipeError(DanluError):
    """The recipe (YAML file or override) is invalid."""


class DataError(DanluError):
    """The data could not be found or read."""


class RunError(DanluError):
    """A run folder is missing or incomplete."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """"did you mean 'x'? " for the closest choice, or "" when none is close."""
    close = difflib.get_close_matches(str(name), list(choices), n=1)
    return f"did you mean '{close[0]}'? " if close else ""


def unknown_name(kind: str, name: str, choices: Iterable[str]) -> DanluError:
    """Error for an unknown registry name, listing the valid ones and the closest match."""
    choices = sorted(choices)
    return DanluError(
        f"unknown {kind} '{name}'",
        hint=f"{did_you_mean(name, choices)}valid {kind}s: {', '.join(choices)}",
    )
