"""Shared fixtures: an isolated cache and runs folder per test, and the in-process CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from danlu.cli.dispatch import main

SHARED = Path(os.environ.get("DANLU_SHARED", Path(__file__).resolve().parents[2] / "shared"))


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory, monkeypatch):
    """Each test gets its own cache; nothing is written to ~/.cache or the repo."""
    monkeypatch.setenv("DANLU_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def cli(tmp_path, capsys):
    """Run ``danlu ARGS`` in-process with runs under tmp_path; returns (exit code, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        argv = [str(a) for a in args]
        if argv and argv[0] in ("train", "evaluate", "predict", "runs", "data", "export", "serve", "tune", "explain"):
            argv += ["--runs-dir", str(tmp_path / "runs")]
        code = main(argv)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])
