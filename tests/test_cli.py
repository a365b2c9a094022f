"""End-to-end through the CLI on bundled and generated data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import last_json


def test_train_digits_json_then_predict_evaluate_and_list(cli, tmp_path):
    code, out, err = cli("train", "digits-mlp", "train.epochs=3", "--json", "--quiet")
    assert code == 0, err
    res = last_json(out)
    run = Path(res["run"])
    assert res["metrics"]["accuracy"] > 0.8 and res["wall_s"] > 0
    for name in ("recipe.yaml", "schema.json", "model.safetensors", "checkpoints/last.safetensors",
                 "checkpoints/last.json", "metrics.jsonl", "report.json", "report.md", "env.json",
                 "plots/learning_curves.png", "plots/confusion_test.png", "plots/predictions_test.png"):
        assert (run / name).exists(), name
    report = json.loads((run / "report.json").read_text())
    assert set(report["metrics"]) >= {"accuracy", "precision_macro", "recall_macro", "f1_macro"}
    assert len(report["confusion_matrix"]) == 10
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3

    img = tmp_path / "seven.png"
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(img)
    code, out, _ = cli("predict", run.name, str(img), "--json", "--top-k", "2")
    assert code == 0
    preds = json.loads(out)["predictions"]
    assert preds[0]["input"] == str(img) and len(preds[0]["top"]) == 2
    assert abs(sum(t["probability"] for t in preds[0]["top"])) <= 1.0 + 1e-6

    code, out, _ = cli("evaluate", str(run), "--split", "val", "--json")
    assert code == 0 and "accuracy" in json.loads(out)["metrics"]
    assert (run / "report-val.json").exists()
    code, out, _ = cli("runs")
    assert code == 0 and run.name in out and "accuracy" in out
    code, out, _ = cli("runs", "show", run.name)
    assert code == 0 and "digits" in out


def test_same_seed_same_numbers(cli):
    results = [last_json(cli("train", "digits-mlp", "train.epochs=2", "--json", "--quiet")[1]) for _ in range(2)]
    assert results[0]["metrics"] == results[1]["metrics"]


@pytest.mark.parametrize("recipe, metric", [("breast-cancer-mlp", "f1"), ("diabetes-mlp", "r2")])
def test_tabular_recipes(cli, recipe, metric, tmp_path):
    code, out, err = cli("train", recipe, "train.epochs=5", "--json", "--quiet")
    assert code == 0, err
    res = last_json(out)
    assert metric in res["metrics"]
    if metric == "r2":
        assert {"mse", "mae", "r2"} <= set(res["metrics"])
    code, out, _ = cli("predict", res["run"], ",".join(["0.1"] * (30 if recipe.startswith("breast") else 10)),
                       "--json")
    assert code == 0, out
    assert "predictions" in json.loads(out)


def test_csv_classification_with_categories_and_missing_values(cli, tmp_path):
    rng = np.random.default_rng(0)
    rows = ["size,colour,weight,label"]
    for i in range(120):
        size = rng.normal()
        colour = ["red", "green", "blue"][i % 3]
        weight = "" if i % 17 == 0 else f"{rng.normal():.3f}"
        rows.append(f"{size:.3f},{colour},{weight},{'big' if size > 0 else 'small'}")
    path = tmp_path / "table.csv"
    path.write_text("\n".join(rows) + "\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"data:\n  name: csv\n  path: {path}\n  target: label\nmodel:\n  name: mlp\n"
                      "train:\n  epochs: 30\n  lr: 0.01\n")
    code, out, err = cli("train", str(recipe), "--json", "--quiet")
    assert code == 0, err
    res = last_json(out)
    assert res["metrics"]["accuracy"] >= 0.85
    schema = json.loads((Path(res["run"]) / "schema.json").read_text())
    assert schema["classes"] == ["big", "small"] and schema["categories"]["colour"] == ["blue", "green", "red"]
    code, out, _ = cli("predict", res["run"], path, "--json")
    assert code == 0 and len(json.loads(out)["predictions"]) == 120
    code, _, err = cli("predict", res["run"], "1,2", "--json")
    assert code == 2 and "expects 3" in err


def _write_folder(root: Path, per_class: int = 12) -> None:
    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("test", 4)):
        for c, colour in (("red", (220, 30, 30)), ("blue", (30, 30, 220))):
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n):
                arr = np.clip(np.array(colour) + rng.normal(0, 20, (20, 24, 3)), 0, 255).astype(np.uint8)
                ext = [".png", ".JPG", ".jpeg"][i % 3]
                Image.fromarray(arr).save(d / f"{i}{ext}", format="PNG" if ext == ".png" else "JPEG")
    (root / "train" / "red" / "broken.jpg").write_bytes(b"not an image at all")
    (root / "train" / "red" / "notes.txt").write_text("hello")
    (root / "train" / "blue" / ".DS_Store").write_bytes(b"\0\0")
    Image.new("L", (10, 10), 128).save(root / "train" / "blue" / "gray.png")
    Image.new("RGBA", (10, 10), (30, 30, 220, 128)).save(root / "train" / "blue" / "alpha.png")
    Image.new("P", (10, 10)).save(root / "train" / "red" / "palette.gif")


def test_imagefolder_with_odd_files(cli, tmp_path):
    root = tmp_path / "pics"
    _write_folder(root)
    code, out, err = cli("train", "imagefolder-cnn", f"data.root={root}", "data.image_size=16", "train.epochs=4",
                         "model.channels=[8,16]", "--json")
    assert code == 0, err
    assert "skipped 1 unreadable image" in err and "broken.jpg" in err
    assert "skipped 1 non-image file" in err
    res = last_json(out)
    assert res["metrics"]["accuracy"] >= 0.75
    code, out, _ = cli("predict", res["run"], root / "test" / "red", "--json")
    assert code == 0
    preds = json.loads(out)["predictions"]
    assert len(preds) == 4 and sum(p["top"][0]["label"] == "red" for p in preds) >= 3


def test_empty_class_folder_is_a_clear_error(cli, tmp_path):
    root = tmp_path / "pics"
    _write_folder(root, per_class=3)
    (root / "train" / "green").mkdir()
    code, _, err = cli("train", "imagefolder-cnn", f"data.root={root}", "train.epochs=1")
    assert code == 2 and "green" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


@pytest.mark.parametrize("args, needle", [
    (("train", "nope-recipe"), "unknown recipe"),
    (("train", "shop/orders.csv"), "does not exist (looked in"),  # a data path with a typo is not a recipe name
    (("train", "digits-mlp", "train.optimizer=adamm"), "valid optimizers"),
    (("train", "digits-mlp", "train.epochs=-1"), "train.epochs"),
    (("train", "mnist-mlp", "data.root=/does/not/exist"), "does not exist"),
    (("predict", "no-such-run", "x.png"), "no run folder"),
    (("evaluate", "no-such-run"), "no run folder"),
    (("train", "mnist-cnn", "data.name=digits"), "too small"),
    (("train", "digits-mlp", "train.epochs=.inf"), "finite number"),
    (("train", "digits-mlp", "train.lr=.inf"), "train.lr: Input should be a finite number"),
])
def test_user_errors_exit_2_without_traceback_and_leave_no_run(cli, tmp_path, args, needle):
    code, out, err = cli(*args)
    assert code == 2
    assert needle in err and "Traceback" not in err
    runs = tmp_path / "runs"
    assert not runs.exists() or not list(runs.iterdir())


def test_models_and_recipes_list(cli):
    code, out, _ = cli("models")
    assert code == 0 and "efficientnet_lite0" in out and "101,770 parameters on MNIST" in out
    code, out, _ = cli("recipes")
    assert code == 0 and "mnist-cnn" in out
    code, out, _ = cli("recipes", "mnist-cnn", "train.epochs=1")
    assert code == 0 and "epochs: 1" in out


def test_early_stop_ends_a_stalled_run(cli):
    code, out, err = cli("train", "digits-mlp", "train.epochs=12", "train.lr=1e-9", "train.schedule=none",
                         "train.early_stop.patience=2", "train.early_stop.metric=val_loss",
                         "train.early_stop.min_delta=0.01", "--json")
    assert code == 0, err
    assert "early stop" in err
    run = last_json(out)["run"]
    epochs = len((Path(run) / "metrics.jsonl").read_text().splitlines())
    assert epochs == 3


def test_progress_is_plain_lines_without_a_terminal(cli):
    code, _, err = cli("train", "digits-mlp", "train.epochs=2")
    assert code == 0
    assert "epoch 1/2" in err and "epoch 2/2" in err and "\x1b[" not in err


def test_another_model_name_drops_the_recipe_s_options_for_the_old_model(cli):
    code, out, err = cli("recipes", "imagefolder-cnn", "model.name=resnet18", "model.weights=null")
    assert code == 0, err
    model = out.split("model:")[1].split("train:")[0]
    assert "name: resnet18" in model and "weights: null" in model and "channels" not in model
    code, out, _ = cli("recipes", "digits-mlp", "model.hidden=[32]", "model.name=mlp")
    assert "batch_norm: true" in out.split("model:")[1]  # same model: the recipe's options stay
