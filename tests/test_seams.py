"""The seams other features plug into: callbacks, the run folder's one writer, inference apart from
training, one prediction front end, and a run folder that is enough to export."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import danlu
from danlu.runs.folder import RunFolder
from danlu.training.hooks import Callback, Stop
from tests.conftest import last_json

PACKAGE = Path(danlu.__file__).parent


class Recorder(Callback):
    """Counts every moment, and stops (or prunes) after ``stop_after`` epochs."""

    def __init__(self, stop_after: int | None = None, status: str = "done"):
        self.calls: dict[str, int] = {}
        self.epochs: list[int] = []
        self.stop_after, self.status = stop_after, status
        self.grad_seen = False

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def on_train_start(self, loop):
        self._count("on_train_start")

    def on_epoch_start(self, loop, steps):
        self._count("on_epoch_start")

    def after_backward(self, loop):
        self._count("after_backward")
        self.grad_seen = self.grad_seen or any(p.grad is not None for p in loop.model.parameters())

    def after_step(self, loop, loss):
        self._count("after_step")
        assert isinstance(loss, float)

    def on_epoch_end(self, loop, metrics):
        self._count("on_epoch_end")
        self.epochs.append(loop.epoch)
        assert metrics["epoch"] == loop.epoch and "val_accuracy" in metrics

    def should_stop(self, loop):
        if self.stop_after and loop.epoch >= self.stop_after:
            return Stop(f"stopped by the test after epoch {loop.epoch}", self.status)
        return None

    def on_train_end(self, loop):
        self._count("on_train_end")


def test_callbacks_see_every_moment_and_can_stop(tmp_path):
    cb = Recorder(stop_after=2)
    result = danlu.train("digits-mlp", ["train.epochs=5", "train.batch_size=256"], runs_dir=tmp_path,
                         progress=False, callbacks=[cb])
    steps = cb.calls["after_step"]
    assert cb.epochs == [1, 2] and cb.calls["on_epoch_start"] == 2 and cb.calls["on_train_end"] == 1
    per_epoch = -(-1293 // 256)  # digits: 1,797 images, 10 % val and 20 % test carved → 1,293 training samples
    assert cb.calls["after_backward"] == steps == 2 * per_epoch
    assert cb.grad_seen
    status = json.loads((result.run / "status.json").read_text())
    assert status["status"] == "done" and status["epochs"] == 2 and "stopped by the test" in status["stop_reason"]
    assert (result.run / "report.json").exists()


def test_a_pruned_run_is_marked_pruned_and_still_predicts(tmp_path):
    result = danlu.train("digits-mlp", ["train.epochs=4"], runs_dir=tmp_path, progress=False,
                         callbacks=[Recorder(stop_after=1, status="pruned")])
    assert result.status == "pruned" and result.metrics == {}
    assert json.loads((result.run / "status.json").read_text())["status"] == "pruned"
    assert not (result.run / "report.json").exists()  # a pruned trial never looks at the test split
    rows = danlu.predict(result.run, [np.zeros((8, 8), np.uint8)])
    assert len(rows[0]["top"]) == 3  # one default top_k everywhere
    # resuming a pruned run does not train it on
    again = danlu.train(resume=result.run, progress=False)
    assert again.status == "pruned"


def test_an_explicit_run_folder_and_one_that_already_holds_a_run(tmp_path):
    target = tmp_path / "study" / "trial-0001"
    result = danlu.train("breast-cancer-mlp", ["train.epochs=1"], progress=False,
                         run_dir=target, plots=False)
    assert result.run == target.resolve() and (target / "report.json").exists()
    assert not (target / "plots").exists()
    with pytest.raises(danlu.DanluError, match="already holds a run"):
        danlu.train("breast-cancer-mlp", ["train.epochs=1"], progress=False, run_dir=target)


def test_run_folder_writes_nothing_when_it_is_not_the_writer(tmp_path):
    folder = RunFolder(tmp_path, writer=False)
    folder.set_status("training", epoch=1)
    folder.append_metrics({"epoch": 1})
    folder.rewrite_metrics([{"epoch": 1}])
    folder.write_report("report", {"metrics": {}}, "# r\n")
    with folder.lock():
        pass
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="unknown run state"):
        RunFolder(tmp_path).set_status("finished")


def test_a_damaged_run_is_listed_as_damaged_and_the_others_still_shown(cli, tmp_path):
    runs = []
    for seed in range(3):
        code, out, err = cli("train", "digits-mlp", "train.epochs=1", f"seed={seed}", "--json", "--quiet")
        assert code == 0, err
        runs.append(Path(last_json(out)["run"]))
    (runs[0] / "status.json").write_text("{not json")
    (runs[1] / "report.json").write_text('["a list"]')
    code, out, err = cli("runs")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 3
    assert "damaged" in lines[0] and "status.json" in lines[0]
    assert "damaged" in lines[1] and "report.json" in lines[1]
    assert "done" in lines[2] and "accuracy" in lines[2]
    code, out, _ = cli("runs", "--json")
    assert code == 0 and [r["status"] for r in json.loads(out)] == ["damaged", "damaged", "done"]


def test_evaluate_finishes_a_run_whose_evaluation_failed(cli, tmp_path):
    code, out, err = cli("train", "digits-mlp", "train.epochs=1", "--json", "--quiet")
    run = Path(last_json(out)["run"])
    RunFolder(run).set_status("failed", epochs=1, best_epoch=1, failed_in="evaluation", error="evaluation: boom")
    code, _, err = cli("evaluate", run)
    assert code == 0, err
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "done" and "error" not in status and status["best_epoch"] == 1


# ---------------------------------------------------------------- data, prediction, export


def _image_folder(root: Path, per_class: int) -> Path:
    rng = np.random.default_rng(0)
    for c, base in enumerate((40, 200)):
        d = root / "train" / f"class{c}"
        d.mkdir(parents=True)
        for i in range(per_class):
            pixels = np.clip(rng.normal(base, 30 + i % 7, (8, 8, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(d / f"{i}.png")
    return root


def test_memory_and_streaming_loaders_normalize_alike(tmp_path):
    """More than 1,024 training images (so a sample is taken): the same sample either way."""
    from danlu.prepare import prepare
    from danlu.recipe import load_recipe

    root = _image_folder(tmp_path / "imgs", 800)  # 1,600 images, 1,120 of them for training
    stats = {}
    for loader in ("memory", "stream"):
        recipe = load_recipe("imagefolder-cnn", [f"data.root={root}", f"data.loader={loader}", "data.image_size=8"])
        _, schema, _ = prepare(recipe)
        stats[loader] = (schema.mean, schema.std)
    assert stats["memory"][0] + stats["memory"][1] == pytest.approx(stats["stream"][0] + stats["stream"][1],
                                                                      abs=1e-6)


def test_the_python_api_reads_csv_files_and_skips_unreadable_images(tmp_path):
    table = danlu.train("breast-cancer-mlp", ["train.epochs=1"], runs_dir=tmp_path, progress=False)
    from danlu.runs.folder import load_schema

    features = load_schema(table.run / "schema.json").features
    csv = tmp_path / "rows.csv"
    csv.write_text(",".join(features) + "\n" + ",".join(["1.0"] * len(features)) + "\n"
                   + ",".join(["2.0"] * len(features)) + "\n")
    rows = danlu.predict(table.run, csv)
    assert [r["input"] for r in rows] == ["rows.csv:1", "rows.csv:2"]

    images = danlu.train("digits-mlp", ["train.epochs=1"], runs_dir=tmp_path, progress=False)
    good = tmp_path / "good.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(good)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = danlu.predict(images.run, [good, bad])
    assert [r["input"] for r in rows] == [str(good)]
    assert any("bad.png" in str(w.message) for w in caught)


def test_a_run_folder_alone_is_enough_to_export(tmp_path, monkeypatch):
    import shutil

    from danlu.cli.dispatch import main

    data = tmp_path / "table.csv"
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4))
    lines = ["a,b,c,d,label"] + [",".join(f"{v:.4f}" for v in row) + f",{'yes' if row[0] + row[1] > 0 else 'no'}"
                                 for row in x]
    data.write_text("\n".join(lines) + "\n")
    result = danlu.train("breast-cancer-mlp", ["data.name=csv", f"data.path={data}", "data.target=label",
                                               "train.epochs=2"], runs_dir=tmp_path / "runs", progress=False)
    sample = RunFolder(result.run).load_parity()
    assert sample is not None and len(sample[0]) == 60  # the whole test split: fewer than 256 rows
    shutil.move(data, tmp_path / "moved.csv")  # the training data is gone
    code = main(["export", str(result.run)])
    assert code == 0
    meta = json.loads((result.run / "model.onnx.json").read_text())
    assert meta["parity"]["samples"] == 60 and meta["parity"]["agreement"] == 1.0
