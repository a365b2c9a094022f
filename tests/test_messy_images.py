"""Messy image folders as users bring them: wrong layouts, links, odd class names, files that go bad."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from danlu.data.imagefolder import scan_image_folder
from danlu.errors import DataError
from tests.conftest import last_json


def pictures(root: Path, classes=("red", "blue"), splits=(("train", 12), ("test", 4)), side: int = 16) -> Path:
    rng = np.random.default_rng(0)
    colours = [(220, 30, 30), (30, 30, 220), (30, 220, 30)]
    for split, n in splits:
        for k, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = np.clip(np.array(colours[k % 3]) + rng.normal(0, 20, (side, side, 3)), 0, 255)
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}.png")
    return root


def test_layout_mistakes_are_named(tmp_path):
    misnamed = pictures(tmp_path / "a")
    (misnamed / "train").rename(misnamed / "training")
    with pytest.raises(DataError, match="has test/ but no train/ folder") as e:
        scan_image_folder(misnamed)
    assert "training/" in e.value.hint
    wrapped = tmp_path / "b"
    pictures(wrapped / "images", splits=(("", 3),))  # b/images/<class>/*.png: one level too high
    with pytest.raises(DataError, match="one class folder") as e:
        scan_image_folder(wrapped)
    assert f"data.root={wrapped / 'images'}" in e.value.hint


def test_broken_links_and_links_to_a_parent_are_passed_over(tmp_path):
    root = pictures(tmp_path / "p")
    os.symlink(tmp_path / "nowhere.png", root / "train" / "red" / "gone.png")
    os.symlink("../..", root / "train" / "blue" / "loop")
    layout = scan_image_folder(root)
    assert len(layout.splits["train"]) == 24 and len(layout.splits["test"]) == 8
    assert sorted(why for _, why in layout.skipped) == ["a broken link", "a link to a parent folder"]


def test_class_names_with_dollar_signs_and_a_stream_with_a_corrupt_file(cli, tmp_path):
    root = pictures(tmp_path / "p", classes=("$5 bill", "50% off $x$"))
    (root / "test" / "$5 bill" / "bad.png").write_bytes(b"not a png at all")
    code, out, err = cli("train", "imagefolder-cnn", f"data.root={root}", "data.loader=stream", "train.epochs=1",
                         "data.image_size=16", "model.channels=[4,8]", "--json", "--quiet")
    assert code == 0, err
    run = Path(last_json(out)["run"])
    report = json.loads((run / "report.json").read_text())
    assert report["classes"] == ["$5 bill", "50% off $x$"] and len(report["plots"]) == 3
    assert json.loads((run / "status.json").read_text())["status"] == "done"


def test_a_last_batch_of_one_trains_with_batch_norm(cli):
    code, out, err = cli("train", "digits-mlp", "data.limit_train=129", "train.batch_size=64", "train.epochs=1",
                         "--json", "--quiet")  # 129 = 2 x 64 + 1
    assert code == 0, err
    code, _, err = cli("train", "digits-mlp", "data.limit_train=1", "train.epochs=1")
    assert code == 2 and "needs at least 2" in err
