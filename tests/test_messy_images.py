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


def test_predict_reads_what_it_can_from_any_folder_path(cli, tmp_path, monkeypatch):
    root = pictures(tmp_path / "p")
    code, out, err = cli("train", "imagefolder-cnn", f"data.root={root}", "train.epochs=1", "data.image_size=16",
                         "model.channels=[4]", "--json", "--quiet")
    assert code == 0, err
    run = last_json(out)["run"]
    shots = tmp_path / ".cache" / "shots"  # a hidden folder above the images is not a hidden image
    shots.mkdir(parents=True)
    for name in ("0.png", "1.png"):
        (shots / name).write_bytes((root / "test" / "red" / name).read_bytes())
    (shots / "broken.png").write_bytes(b"no image here")
    monkeypatch.chdir(tmp_path / ".cache")
    code, out, err = cli("predict", run, "--json", "../.cache/shots")  # inputs after an option, a path with ..
    assert code == 0, err
    assert [Path(r["input"]).name for r in json.loads(out)["predictions"]] == ["0.png", "1.png"]
    assert "skipped ../.cache/shots/broken.png: not a readable image" in err
    code, _, err = cli("predict", run, shots / "broken.png")
    assert code == 2 and "none of the 1 image(s) could be read" in err
    import danlu

    rows = danlu.predict(run, [root / "test" / "red", Image.new("RGB", (16, 16))])  # a folder and a PIL image
    assert len(rows) == 5 and rows[-1]["input"] == "input 4"
    (shots / "copy.jfif").write_bytes((root / "test" / "red" / "0.png").read_bytes())  # any JPEG-family name
    assert len(danlu.predict(run, [shots / "copy.jfif"])) == 1


@pytest.mark.parametrize("args, needle", [
    (("imagefolder-cnn", "model.padding=valid", "data.image_size=8", "model.batch_norm=true"), "too small"),
    (("digits-mlp", "model.hidden=[0]"), "model.hidden.0: Input should be greater than or equal to 1"),
    (("digits-mlp", "train.device=mps"), "no Apple GPU"),
])
def test_model_shapes_and_devices_that_cannot_work_are_user_errors(cli, tmp_path, args, needle):
    extra = [f"data.root={pictures(tmp_path / 'p')}"] if args[0].startswith("imagefolder") else []
    code, _, err = cli("train", *args, *extra, "train.epochs=1")
    assert code == 2 and needle in err, err
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())
