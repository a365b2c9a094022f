"""A runs folder for the studio tests: two real trained runs that differ in lr, a real two-trial study,
a run still "training", and the ways a folder breaks (damaged status, half-written, torn metrics line).

Built once per test session (``runs_folder``) and shared by the API and browser tests."""

from __future__ import annotations

import base64
import io
import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

_BUILT: dict[str, Path] = {}


def runs_folder(tmp_path_factory) -> Path:
    if "root" in _BUILT:
        return _BUILT["root"]
    from danlu.api import train
    from danlu.tuning import tune

    root = tmp_path_factory.mktemp("studio-runs")
    a = train("digits-mlp", ["train.epochs=2", "train.lr=0.003"], runs_dir=root, progress=False).run
    b = train("digits-mlp", ["train.epochs=3", "train.lr=0.01"], runs_dir=root, progress=False).run
    tune("digits-mlp", ["train.epochs=1"], trials=2, sampler="random", pruner="none", study="digits-study",
         runs_dir=root)
    # a run that is training right now: its first epoch logged, more to come (the tests append them)
    live = root / "20990101-000000-digits-mlp-live"
    live.mkdir()
    shutil.copy(a / "recipe.yaml", live / "recipe.yaml")
    (live / "status.json").write_text(json.dumps({"status": "training", "epoch": 1, "epochs": 5}))
    (live / "metrics.jsonl").write_text((a / "metrics.jsonl").read_text().splitlines()[0] + "\n")
    # damaged: status.json cut mid-write by a full disk
    broken = root / "20000101-000000-broken"
    shutil.copytree(a, broken)
    (broken / "status.json").write_text('{"status": "do')
    # half-written: the process died right after the recipe
    half = root / "20000101-000001-half"
    half.mkdir()
    shutil.copy(a / "recipe.yaml", half / "recipe.yaml")
    # a torn last metrics line (killed mid-append) and a report that is not JSON
    torn = root / "20000101-000002-torn"
    shutil.copytree(a, torn)
    with (torn / "metrics.jsonl").open("a") as f:
        f.write('{"epoch": 3, "train_lo')
    (torn / "report.json").write_text("not json")
    _BUILT.update(root=root, a=a, b=b, live=live)
    return root


def built(name: str) -> Path:
    return _BUILT[name]


def digit_data_url(digit: int = 7) -> str:
    from sklearn.datasets import load_digits

    digits = load_digits()
    img = digits.images[list(digits.target).index(digit)]
    buf = io.BytesIO()
    Image.fromarray((img * 15.9).astype(np.uint8)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
