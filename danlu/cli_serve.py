"""CLI verbs of the production path (export, serve), kept apart so cli.py stays small."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def add_serving_verbs(sub: argparse._SubParsersAction, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """Register ``export`` and ``serve`` (filled in by the serving work)."""
    del sub, common
