"""Tiny trained runs for the explanation tests, trained once per test session (a few seconds each) and
shared by every module that asks: 8x8 digits on simple_cnn (Grad-CAM fits) and on an MLP (it does not),
breast-cancer rows, and a character BiLSTM on generated Chinese reviews."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

POS = ["这家酒店很好", "服务很好，房间干净", "非常满意，推荐", "位置好，早餐好吃", "很好很好", "干净舒服，满意"]
NEG = ["房间太差了", "服务很差，不推荐", "非常失望，脏", "早餐难吃，太吵", "很差很差", "又脏又吵，失望"]
_TRAINED: dict[str, SimpleNamespace] = {}


def _tsv(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("label\ttext\n" + "\n".join(f"{lab}\t{t}" for lab, t in rows) + "\n", encoding="utf-8")
    return path


def tiny_runs(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    if "runs" in _TRAINED:
        return _TRAINED["runs"]
    from danlu.api import train

    root = tmp_path_factory.mktemp("explain-runs")
    data = tmp_path_factory.mktemp("explain-texts")
    tr = _tsv(data / "train.tsv", [("pos", t) for t in POS] * 4 + [("neg", t) for t in NEG] * 4)
    te = _tsv(data / "test.tsv", [("pos", POS[0]), ("neg", NEG[0])] * 3)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DANLU_CACHE", str(tmp_path_factory.mktemp("explain-cache")))

        def quick(recipe: str, *extra: str) -> Path:
            return train(recipe, ["train.epochs=1", *extra], runs_dir=root, progress=False).run

        _TRAINED["runs"] = SimpleNamespace(
            cnn=quick("digits-mlp", "model={name: simple_cnn, channels: 8, hidden: 16}", "tune=null"),
            mlp=quick("digits-mlp"),
            table=quick("breast-cancer-mlp"),
            text=quick("chnsenticorp-lstm", "data.name=text", f"data.train={tr}", f"data.test={te}",
                       "model={name: lstm, embed_dim: 16, hidden: 16}", "data.tokenizer=auto", "data.max_len=null",
                       "data.min_freq=1"))
    return _TRAINED["runs"]


def digit_png_bytes(index: int = 0) -> bytes:
    import io

    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    img = (load_digits().images[index] * 15.9).astype(np.uint8)  # 0..16 → 0..255
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()
