"""Messy tables as users bring them: spreadsheet exports, typos, odd label spellings, files that are not there."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from danlu.data.labels import canonical_label
from danlu.data.tabular import load_tabular, read_csv
from danlu.data.text.files import read_text_table
from danlu.errors import DataError
from danlu.recipe import DataConfig
from tests.conftest import last_json


def table(path: Path, header: list[str], rows: list[list]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def xy_rows(n: int = 120, seed: int = 0) -> list[list]:
    rng = np.random.default_rng(seed)
    return [[f"{a:.3f}", f"{b:.3f}", int(a > 0.5)] for a, b in rng.random((n, 2))]


def load(path: Path, seed: int = 0, **cfg):
    return load_tabular(DataConfig(name="csv", path=path, **cfg), seed)


def test_spreadsheet_exports_read_as_users_mean_them(tmp_path):
    cells = tmp_path / "cells.csv"
    cells.write_text(",,\n,,\n")
    with pytest.raises(DataError, match="is empty"):
        read_csv(cells)
    trailing = tmp_path / "trailing.csv"  # a delimiter after the last column on every line
    trailing.write_text("x,z,y,\r\n" + "".join(f"{a},{b},{c},\r\n" for a, b, c in xy_rows()))
    assert read_csv(trailing)[0] == ["x", "z", "y"]
    splits, schema = load(trailing)
    assert schema.features == ["x", "z"] and schema.classes == ["0", "1"]
    dup = table(tmp_path / "dup.csv", ["x", "x", "y"], xy_rows())
    with pytest.raises(DataError, match=r"'x' appears twice \(columns 1 and 2\)"):
        read_csv(dup)


@pytest.mark.parametrize("seed", range(4))
def test_one_typo_in_a_numeric_column_is_an_error_whichever_split_it_lands_in(tmp_path, seed):
    rows = xy_rows()
    rows[57][0] = "0.5o"
    path = table(tmp_path / "typo.csv", ["x", "z", "y"], rows)
    with pytest.raises(DataError, match=r"typo.csv: column 'x', data row 58: '0.5o' is not a number"):
        load(path, seed)


def test_grouped_thousands_are_numbers_and_many_unique_strings_get_a_note(tmp_path):
    rng = np.random.default_rng(1)
    rows = [[f"{v:,.0f}", f"id-{i}", int(v > 50_000)] for i, v in enumerate(rng.uniform(1_000, 99_000, 150))]
    splits, schema = load(table(tmp_path / "money.csv", ["income", "customer", "label"], rows))
    assert "income" not in schema.categories and len(schema.categories["customer"]) > 20
    assert any("'customer' is read as" in n and "data.features" in n for n in splits.notes)


def test_non_finite_values_are_refused_at_load_time(tmp_path):
    rows = xy_rows()
    rows[3][0] = "inf"
    with pytest.raises(DataError, match="data row 4: 'inf' is not a finite number"):
        load(table(tmp_path / "inf.csv", ["x", "z", "y"], rows))
    target = [[r[0], r[1], float(r[0]) * 2] for r in xy_rows()]
    target[5][2] = "inf"
    with pytest.raises(DataError, match="not a finite number in data row 6"):
        load(table(tmp_path / "t.csv", ["x", "z", "t"], target), task="regression")


def test_label_spellings_of_one_class_are_one_class(tmp_path):
    assert [canonical_label(v) for v in ("1", "1.0", "01", "1.5", "pos", "-0.0")] == ["1", "1", "1", "1.5", "pos", "0"]
    rows = [[a, b, ["1", "1.0", "0", "0.0"][i % 4]] for i, (a, b, _) in enumerate(xy_rows())]
    _, schema = load(table(tmp_path / "labels.csv", ["x", "z", "y"], rows))
    assert schema.classes == ["0", "1"]
    text = tmp_path / "t.csv"
    text.write_text("text,label\ngood,1.0\nbad,0\nfine,1\nhmm,NA\nmeh,?\nno intent,none\n", encoding="utf-8")
    got = read_text_table(text)
    assert got.labels == ["1", "0", "1", "none"] and [why for _, why in got.skipped] == ["missing label"] * 2


def test_target_with_no_values_says_so(tmp_path):
    rows = [[a, b, ""] for a, b, _ in xy_rows(10)]
    with pytest.raises(DataError, match="has no values"):
        load(table(tmp_path / "blank.csv", ["x", "z", "y"], rows))


@pytest.fixture(scope="module")
def regression_run(tmp_path_factory):
    from danlu.api import train

    root = tmp_path_factory.mktemp("messy")
    rows = [[a, b, float(a) * 3 + float(b)] for a, b, _ in xy_rows(200)]
    path = table(root / "reg.csv", ["a", "b", "price"], rows)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DANLU_CACHE", str(root / "cache"))
        run = train("diabetes-mlp", ["data.name=csv", f"data.path={path}", "data.target=price", "train.epochs=2",
                                     "data.val_fraction=0"], runs_dir=root / "runs", progress=False).run
    return run


def test_predict_refuses_what_it_cannot_read(cli, regression_run, tmp_path):
    code, _, err = cli("predict", regression_run, "1e38,1e38", "--json")
    assert code == 2 and "too large for the model" in err
    code, _, err = cli("predict", regression_run, "missing.csv")
    assert code == 2 and "missing.csv: no such file" in err
    code, _, err = cli("predict", regression_run, "1,2", "--top-k", "0")
    assert code == 2 and "--top-k" in err
    code, out, _ = cli("predict", regression_run, "0.5,0.5", "--json")
    assert code == 0 and set(json.loads(out)["predictions"][0]["prediction"]) == {"price"}
    code, _, err = cli("evaluate", regression_run, "--split", "val")
    assert code == 2 and "val split of this run's data is empty" in err and "Traceback" not in err


def test_text_predict_file_errors(cli, tmp_path):
    from danlu.api import train

    rows = [("pos", t) for t in ("good", "great", "nice")] * 8 + [("neg", t) for t in ("bad", "awful", "poor")] * 8
    data = tmp_path / "t.tsv"
    data.write_text("label\ttext\n" + "".join(f"{a}\t{b}\n" for a, b in rows), encoding="utf-8")
    run = train("sst2-lstm", ["data.name=text", f"data.path={data}", "train.epochs=1", "data.min_freq=1"],
                runs_dir=tmp_path / "runs", progress=False).run
    code, _, err = cli("predict", run, "--file", tmp_path / "nope.txt")
    assert code == 2 and f"file not found: {tmp_path / 'nope.txt'}" in err
    import gzip

    packed = tmp_path / "lines.txt.gz"
    packed.write_bytes(gzip.compress(b"good\nawful\n"))
    code, out, err = cli("predict", run, "--file", packed, "--json")
    assert code == 0 and len(json.loads(out)["predictions"]) == 2, err
    gbk = tmp_path / "gbk.txt"
    gbk.write_bytes("服务很好\n".encode("gbk"))
    code, _, err = cli("predict", run, "--file", gbk)
    assert code == 2 and "not UTF-8" in err and "iconv -f gbk" in err


def test_options_may_come_before_overrides(cli, capsys):
    code, out, err = cli("train", "digits-mlp", "--json", "--quiet", "train.epochs=1")
    assert code == 0, err
    assert json.loads(Path(last_json(out)["run"], "recipe.yaml").read_text().split("epochs:")[1].split()[0]) == 1
    with pytest.raises(SystemExit) as stop:  # argparse's own usage error
        cli("train", "digits-mlp", "--quiet", "train.epochs=1", "--nope")
    assert stop.value.code == 2 and "unrecognized arguments: --nope" in capsys.readouterr().err


def test_semicolon_separated_text_files(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("text;label\ngood, really;pos\nbad;neg\n", encoding="utf-8")
    got = read_text_table(path)
    assert got.texts == ["good, really", "bad"] and got.labels == ["pos", "neg"]
    assert any("semicolon" in n for n in got.notes)


def test_relative_data_paths_are_saved_absolute(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    table(tmp_path / "rel.csv", ["x", "z", "y"], xy_rows())
    code, out, err = cli("train", "breast-cancer-mlp", "data.name=csv", "data.path=rel.csv", "train.epochs=1",
                         "--json", "--quiet")
    assert code == 0, err
    run = Path(last_json(out)["run"])
    assert f"path: {tmp_path / 'rel.csv'}" in (run / "recipe.yaml").read_text()
    monkeypatch.chdir(run)
    code, _, err = cli("evaluate", run)
    assert code == 0, err


def test_runs_are_found_by_part_of_their_name(tmp_path):
    from danlu.errors import RunError
    from danlu.runs.store import resolve_run

    for name in ("20261101-100000-digits-mlp", "20261102-100000-digits-mlp", "20261103-100000-mnist-cnn"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "recipe.yaml").write_text("name: x\n")
    assert resolve_run("digits", tmp_path).name == "20261102-100000-digits-mlp"  # the newest match
    assert resolve_run("20261101", tmp_path).name == "20261101-100000-digits-mlp"
    assert resolve_run("latest", tmp_path).name == "20261103-100000-mnist-cnn"
    with pytest.raises(RunError, match="start of 3 run names"):
        resolve_run("2026", tmp_path)
    with pytest.raises(RunError, match="no run folder 'resnet'"):
        resolve_run("resnet", tmp_path)


def test_a_text_file_without_a_header_keeps_its_first_row(tmp_path):
    rows = [("1", "这家酒店很好"), ("0", "房间太差了"), ("1", "服务很好"), ("0", "早餐难吃")] * 5
    path = tmp_path / "nohdr.tsv"
    path.write_text("".join(f"{label}\t{text}\n" for label, text in rows), encoding="utf-8")
    got = read_text_table(path)
    assert got.texts[0] == "这家酒店很好" and len(got) == 20 and got.labels[:2] == ["1", "0"]
    assert any("no header row" in n for n in got.notes)
    named = tmp_path / "named.tsv"  # a real header is still a header
    named.write_text("stars\treview\n" + "".join(f"{label}\t{text}\n" for label, text in rows), encoding="utf-8")
    got = read_text_table(named, "review", "stars")
    assert len(got) == 20 and not any("no header" in n for n in got.notes)


def test_hints_for_a_misspelled_target_and_a_word_tokenizer_on_chinese(cli, tmp_path):
    path = table(tmp_path / "t.csv", ["x", "z", "price"], xy_rows())
    code, _, err = cli("train", "breast-cancer-mlp", "data.name=csv", f"data.path={path}", "data.target=prise")
    assert code == 2 and "did you mean 'price'?" in err
    zh = tmp_path / "zh.csv"
    zh.write_text("text,label\n" + "这家酒店很好,1\n房间太差了,0\n服务很好,1\n早餐难吃,0\n" * 5, encoding="utf-8")
    code, out, err = cli("data", "describe", "chnsenticorp-lstm", "data.name=text", f"data.path={zh}",
                         "data.tokenizer=word")
    assert code == 0 and "use data.tokenizer=char or jieba" in out + err
