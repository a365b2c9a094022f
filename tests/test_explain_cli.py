"""``danlu explain`` and ``danlu.explanations`` end to end on tiny runs: digits CNN (images), breast cancer
(tables), generated Chinese reviews (char text); the files they write and the errors they give."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import last_json

POS = ["这家酒店很好", "服务很好，房间干净", "非常满意，推荐", "位置好，早餐好吃", "很好很好", "干净舒服，满意"]
NEG = ["房间太差了", "服务很差，不推荐", "非常失望，脏", "早餐难吃，太吵", "很差很差", "又脏又吵，失望"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from danlu.api import train

    where = tmp_path_factory.mktemp("runs")
    text_dir = tmp_path_factory.mktemp("text")
    rows = [("pos", t) for t in POS] * 6 + [("neg", t) for t in NEG] * 6
    train_tsv = text_dir / "train.tsv"
    train_tsv.write_text("label\ttext\n" + "\n".join(f"{a}\t{b}" for a, b in rows) + "\n", encoding="utf-8")
    quiet = dict(runs_dir=where, progress=False, plots=False)
    return {
        "cnn": train("digits-mlp", ["model={name: cnn, padding: same}", "train.epochs=2"], **quiet).run,
        "table": train("breast-cancer-mlp", ["train.epochs=3"], **quiet).run,
        "text": train("chnsenticorp-lstm", ["data.name=text", f"data.path={train_tsv}", "data.max_len=null",
                                            "data.min_freq=1", "train.epochs=6", "train.lr=0.01",
                                            "data.val_fraction=0.2", "data.test_fraction=0.1"], **quiet).run,
    }


@pytest.fixture(scope="module")
def digit_pngs(tmp_path_factory):
    from PIL import Image

    from danlu.data.vision import _digits

    x, y = _digits()["all"]
    folder = tmp_path_factory.mktemp("digits")
    for i in range(3):
        Image.fromarray(x[i].reshape(8, 8).astype(np.uint8)).save(folder / f"d{i}-{int(y[i])}.png")
    return folder


def test_images_write_a_png_per_input_and_json(cli, runs, digit_pngs, tmp_path):
    out = tmp_path / "ex"
    code, stdout, err = cli("explain", runs["cnn"], digit_pngs, "--out", out, "--json")
    assert code == 0, err
    result = last_json(stdout)
    assert result["method"] == "guided_gradcam" and len(result["explanations"]) == 3  # auto on danlu's CNNs
    saved = json.loads((out / "explanations.json").read_text())
    for row in saved["explanations"]:
        assert (out / row["map"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert row["target"]["label"] == row["top"][0]["label"]  # the prediction is explained by default
        assert 0 <= row["target"]["probability"] <= 1
    code, stdout, err = cli("explain", runs["cnn"], next(digit_pngs.iterdir()), "--method", "ig", "--target", "3",
                            "--out", out, "--json")
    assert code == 0, err
    row = last_json(stdout)["explanations"][0]
    assert row["target"]["label"] == "3" and row["completeness_error"] < 0.05


def test_python_api_returns_raw_maps(runs, digit_pngs):
    import danlu

    result = danlu.explain(runs["cnn"], sorted(digit_pngs.iterdir())[:2], method="saliency")
    maps = [r["map"] for r in result["explanations"]]
    assert result["method"] == "saliency" and all(m.shape == (8, 8) for m in maps)
    assert all(np.abs(m).sum() > 0 for m in maps)


def test_bad_inputs_are_refused_like_predict(cli, runs, digit_pngs, tmp_path):
    code, _, err = cli("explain", runs["cnn"], digit_pngs / "missing.png", "--out", tmp_path)
    assert code == 2 and "no such file" in err
    code, _, err = cli("explain", runs["cnn"], next(digit_pngs.iterdir()), "--target", "eleven", "--out", tmp_path)
    assert code == 2 and "0, 1, 2" in err
    code, _, err = cli("explain", runs["cnn"], next(digit_pngs.iterdir()), "--method", "shap", "--out", tmp_path)
    assert code == 2 and "guided_gradcam, gradcam, ig, occlusion, saliency" in err
    code, _, err = cli("explain", runs["text"], "   ", "--out", tmp_path)
    assert code == 2 and "empty" in err
    code, _, err = cli("explain", runs["text"], "很好", "--method", "gradcam", "--out", tmp_path)
    assert code == 2 and "methods for this model: ig" in err
    code, _, err = cli("explain", runs["cnn"], "--out", tmp_path)
    assert code == 2 and "--top-losses" in err
    code, _, err = cli("explain", runs["cnn"], "--global", "--out", tmp_path)
    assert code == 2 and "table" in err
    assert "Traceback" not in err


def test_tables_bars_and_kernel_shap_in_column_names(cli, runs, tmp_path):
    from danlu.data.tabular import _sklearn_columns

    columns, _, _, _ = _sklearn_columns("breast_cancer")
    row = ",".join(str(columns[c][0]) for c in columns)
    for method in ("ig", "shap"):
        code, stdout, err = cli("explain", runs["table"], row, "--method", method, "--out", tmp_path / method, "--json")
        assert code == 0, err
        rec = last_json(stdout)["explanations"][0]
        assert [n for n, _ in rec["features"]] == list(columns)
        assert (tmp_path / method / rec["chart"]).stat().st_size > 1000
    ig = json.loads((tmp_path / "ig" / "explanations.json").read_text())["explanations"][0]
    assert ig["completeness_error"] < 0.05


def test_global_importance_and_top_losses_for_tables(cli, runs, tmp_path):
    code, stdout, err = cli("explain", runs["table"], "--global", "--out", tmp_path, "--json")
    assert code == 0, err
    result = last_json(stdout)
    assert result["split"] == "val" and len(result["importance"]) == 30
    values = [r["importance"] for r in result["importance"]]
    assert values == sorted(values, reverse=True) and values[0] > 0  # some column matters
    assert (tmp_path / "global-importance.png").is_file()
    code, stdout, err = cli("explain", runs["table"], "--top-losses", "4", "--out", tmp_path, "--json")
    assert code == 0, err
    losses = [r["loss"] for r in last_json(stdout)["explanations"]]
    assert len(losses) == 4 and losses == sorted(losses, reverse=True)


def test_text_tokens_html_and_terminal(cli, runs, tmp_path):
    code, stdout, err = cli("explain", runs["text"], "服务很好，房间干净", "早餐难吃，太吵", "--out", tmp_path,
                            "--json")
    assert code == 0, err
    rows = last_json(stdout)["explanations"]
    assert "".join(t for t, _ in rows[0]["tokens"]) == "服务很好，房间干净"  # one score per character
    html = (tmp_path / "tokens.html").read_text(encoding="utf-8")
    assert html.count("<span") == sum(len(r["tokens"]) for r in rows)
    code, stdout, _ = cli("explain", runs["text"], "很好", "--out", tmp_path)
    assert code == 0 and "strongest:" in stdout


def test_text_top_losses_page(cli, runs, tmp_path):
    code, stdout, err = cli("explain", runs["text"], "--top-losses", "3", "--out", tmp_path, "--json")
    assert code == 0, err
    assert len(last_json(stdout)["explanations"]) == 3 and (tmp_path / "top-losses.html").is_file()


def test_image_top_losses_grid(cli, runs, tmp_path):
    code, stdout, err = cli("explain", runs["cnn"], "--top-losses", "5", "--out", tmp_path)
    assert code == 0, err
    assert (tmp_path / "top-losses.png").stat().st_size > 5000 and "top-losses.png" in stdout


def test_help_does_not_import_captum_or_torch():
    code = ("import sys; from danlu.cli.dispatch import build_parser; build_parser(); "
            "print(sorted(m for m in ('captum', 'torch', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
