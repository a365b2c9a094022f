"""danlu train PATH: the data is inspected, a recipe chosen per data kind, and the run finishes without a flag."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from danlu.autorecipe.choose import choose
from danlu.autorecipe.inspect import inspect_data, looks_like_data
from danlu.autorecipe.run import parse_duration
from danlu.errors import DanluError
from tests.conftest import SHARED, last_json

DATASETS = SHARED / "datasets"


def _digit_folder(root, per_class=12, sides=(18, 40), seed=0):
    from benchmarks.digit_photos import build

    return build(root / "photos", per_class=per_class, seed=seed, sides=sides)


def _slice_tsv(src, out, n, text_col, label_col, seed=0, longest=80):
    """n rows (of at most ``longest`` characters, to train fast) of a gzipped TSV corpus as a CSV with columns
    review,label (what a user's file looks like)."""
    import csv

    with gzip.open(src, "rt", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
                if len(r[text_col].strip()) <= longest]
    random.Random(seed).shuffle(rows)
    with open(out, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["review", "label"])
        for r in rows[:n]:
            w.writerow([r[text_col].strip(), r[label_col]])
    return out


def _table(path, n=300, seed=0):
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    city = rng.choice(["north", "south", "east"], n)
    y = np.where(x1 + 0.5 * x2 + (city == "north") + rng.normal(0, 0.3, n) > 0.5, "yes", "no")
    with open(path, "w", encoding="utf-8") as f:
        f.write("age,income,city,bought\n")
        for a, b, c, t in zip(x1, x2, city, y, strict=True):
            f.write(f"{a:.3f},{'' if rng.random() < 0.05 else f'{b:.3f}'},{c},{t}\n")
    return path


# ---------------------------------------------------------------- inspection and choice (no training)


def test_image_folder_profile_and_choice(tmp_path):
    folder = _digit_folder(tmp_path, per_class=6, sides=(18, 40))
    p = inspect_data(folder)
    assert p.kind == "image" and p.rows == 60 and len(p.classes) == 10
    assert set(p.image_modes) <= {"L", "RGB", "P"} and len(p.image_formats) >= 2
    assert 14 <= p.image_sides[0] <= p.image_side_low <= p.image_side <= p.image_sides[1] < 40
    c = choose(p)
    rec = c.default.recipe
    assert rec["model"]["name"] == "cnn" and rec["data"]["root"] == str(folder.resolve())
    assert rec["data"]["image_size"] == max(16, p.image_side_low // 8 * 8)  # from the images' own sizes
    assert rec["train"]["early_stop"]["patience"] >= 5 and rec["data"]["augment"]["flip"] is False
    assert [k.name for k in c.candidates] == ["cnn", "efficientnet"]  # pretrained only through validation


def test_grey_pictures_in_colour_files_get_one_channel(tmp_path):
    for k, cls in enumerate(("a", "b")):
        (tmp_path / cls).mkdir()
        for i in range(4):
            grey = np.full((40, 30), 60 * i + 20 * k, np.uint8)
            mode = ("L", "RGB", "P", "RGB")[i]
            Image.fromarray(grey).convert(mode).save(tmp_path / cls / f"{i}.png")
    p = inspect_data(tmp_path)
    assert p.grayscale and p.image_side == 30
    assert choose(p).default.recipe["data"]["channels"] == 1
    (tmp_path / "a" / "red.png").unlink(missing_ok=True)
    Image.fromarray(np.dstack([np.full((40, 30), 200, np.uint8), np.zeros((40, 30, 2), np.uint8)])).save(
        tmp_path / "a" / "red.png")
    assert choose(inspect_data(tmp_path)).default.recipe["data"]["channels"] == 3


def test_language_decides_the_text_recipe(tmp_path):
    zh, en = tmp_path / "zh.csv", tmp_path / "en.csv"
    feel = ("失望", "满意")
    zh.write_text("评论,标签\n" + "".join(f"这家酒店的房间很干净，服务也很好，第{i}次入住{feel[i % 2]},{i % 2}\n"
                                       for i in range(40)), encoding="utf-8")
    en.write_text("text,label\n" + "".join(f"the film number {i} was {'wonderful' if i % 2 else 'dull'} to watch,"
                                         f"{i % 2}\n" for i in range(40)), encoding="utf-8")
    pz, pe = inspect_data(zh), inspect_data(en)
    assert (pz.kind, pz.language, pz.text_column, pz.label_column) == ("text", "zh", "评论", "标签")
    assert (pe.kind, pe.language, pe.text_column) == ("text", "en", "text")
    cz, ce = choose(pz), choose(pe)
    assert cz.default.recipe["data"]["tokenizer"] == "char" and cz.candidates[1].recipe["data"]["tokenizer"] == "jieba"
    assert ce.default.recipe["data"]["tokenizer"] == "word"
    assert ce.candidates[1].recipe["model"] == {"name": "transformer", "pretrained": "minilm", "pooling": "mean"}


def test_wide_file_with_a_text_column_is_a_table(tmp_path):
    path = tmp_path / "loans.csv"
    rng = np.random.default_rng(0)
    rows = [f"{rng.integers(20, 70)},{rng.normal():.3f},engineer number {i} at a large firm,{rng.normal():.2f}"
            for i in range(100)]
    path.write_text("age,score,job_title,rate\n" + "\n".join(rows) + "\n", encoding="utf-8")
    p = inspect_data(path)
    assert (p.kind, p.target, p.task) == ("tabular", "rate", "regression")
    assert p.numeric_columns == 2 and p.other_columns == 1
    rec = choose(p).default.recipe
    assert rec["data"]["target"] == "rate" and rec["data"]["name"] == "csv"


def test_table_classification_choice(tmp_path):
    p = inspect_data(_table(tmp_path / "t.csv"))
    assert (p.kind, p.target, p.task, p.classes) == ("tabular", "bought", "classification", ["no", "yes"])
    c = choose(p)
    assert [k.name for k in c.candidates] == ["lightgbm", "tabular_net"]
    assert c.default.recipe["model"]["name"] == "lightgbm" and c.default.recipe["data"]["target"] == "bought"
    assert "tune" in c.default.recipe  # the built-in's search space comes along: danlu tune RUN/recipe.yaml


def test_paths_versus_recipe_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    (tmp_path / "r.yaml").write_text("data: {name: digits}\n", encoding="utf-8")
    (tmp_path / "digits-mlp").mkdir()  # a folder named like a built-in recipe: the recipe wins
    assert looks_like_data("data.csv") and looks_like_data(str(tmp_path))
    assert not looks_like_data("r.yaml") and not looks_like_data("digits-mlp") and not looks_like_data("dgits-mlp")
    assert parse_duration("10m") == 600 and parse_duration("90s") == 90 and parse_duration("1.5h") == 5400
    assert parse_duration("45") == 45
    with pytest.raises(DanluError, match="not a duration"):
        parse_duration("ten minutes")


def test_typo_of_a_recipe_name_keeps_its_error(cli):
    code, _, err = cli("train", "digts-mlp")
    assert code == 2 and "unknown recipe 'digts-mlp'" in err and "digits-mlp" in err
    code, _, err = cli("train", "digits-mlp", "--time-limit", "1m")
    assert code == 2 and "--time-limit chooses among candidate recipes for a data PATH" in err


def test_unreadable_paths_are_explained(cli, tmp_path):
    code, _, err = cli("train", _table(tmp_path / "t.csv", n=40), "--nproc", "2")
    assert code == 2 and "--nproc trains a recipe" in err
    (tmp_path / "x.bin").write_bytes(b"\0\1")
    code, _, err = cli("train", tmp_path / "x.bin")
    assert code == 2 and "cannot tell what" in err
    (tmp_path / "empty").mkdir()
    code, _, err = cli("train", tmp_path / "empty")
    assert code == 2 and "neither an image, audio nor text folder" in err


# ---------------------------------------------------------------- end to end, no flags


def _check_run(out, kind_recipe):
    result = last_json(out)
    run = Path(result["run"])
    recipe = (run / "recipe.yaml").read_text(encoding="utf-8")
    assert f"name: {kind_recipe}" in recipe and "Chosen by danlu train PATH" in recipe
    auto = json.loads((run / "auto.json").read_text(encoding="utf-8"))
    assert auto["kept"] and auto["leaderboard"][0]["status"] == "done"
    assert "## Automatic choice" in (run / "report.md").read_text(encoding="utf-8")
    return result, run


def test_train_image_folder_without_a_recipe(cli, tmp_path):
    folder = _digit_folder(tmp_path, per_class=8, sides=(16, 24))
    code, out, err = cli("train", folder, "--json")
    assert code == 0, err
    assert "inspected" in err and "chose auto-image-cnn" in err
    result, run = _check_run(out, "auto-image-cnn")
    assert 0.0 <= result["metrics"]["accuracy"] <= 1.0
    # the written recipe reruns as it is
    code, out, err = cli("train", run / "recipe.yaml", "train.epochs=1", "--json")
    assert code == 0, err


@pytest.mark.skipif(not (DATASETS / "chnsenticorp").is_dir(), reason="needs the shared ChnSentiCorp")
def test_train_chinese_reviews_without_a_recipe(cli, tmp_path):
    csv = _slice_tsv(DATASETS / "chnsenticorp" / "train.tsv.gz", tmp_path / "reviews.csv", 240, "text_a", "label")
    code, out, err = cli("train", csv, "--json")
    assert code == 0, err
    assert "Chinese text" in err
    _check_run(out, "auto-text-char-lstm")


@pytest.mark.skipif(not (DATASETS / "sst2").is_dir(), reason="needs the shared SST-2")
def test_train_english_reviews_without_a_recipe(cli, tmp_path):
    csv = _slice_tsv(DATASETS / "sst2" / "train.tsv.gz", tmp_path / "reviews.csv", 300, "sentence", "label")
    code, out, err = cli("train", csv, "--json")
    assert code == 0, err
    assert "English text" in err
    _check_run(out, "auto-text-word-lstm")


def test_train_table_with_a_time_limit_has_a_leaderboard(cli, tmp_path):
    path = _table(tmp_path / "shop.csv")
    code, out, err = cli("train", path, "--time-limit", "3m", "--json")
    assert code == 0, err
    result, run = _check_run(out, "auto-table-")
    board = result["leaderboard"]
    assert [e["candidate"] for e in board if e["status"] == "done"][:1] and all("val" in e for e in board
                                                                              if e["status"] == "done")
    from danlu.autorecipe.run import clearly_better

    first, kept = board[0], next(e for e in board if e["candidate"] == result["kept"])
    assert kept is first or clearly_better(kept["val"], first["val"], "accuracy", first["val_samples"])
    report = (run / "report.md").read_text(encoding="utf-8")
    assert "| candidate | status | val accuracy |" in report and "(kept)" in report
    assert any(e["candidate"] == "ensemble" and e["status"] in ("done", "skipped") for e in board)
    gbm = next(e for e in board if e["candidate"] == "lightgbm")  # compared on a val split it never trained on
    assert "refit: false" in (Path(gbm["run"]) / "recipe.yaml").read_text(encoding="utf-8")


@pytest.mark.parametrize("case", ["constant", "id", "leak"])
def test_bad_tables_are_refused_with_the_loaders_message(cli, tmp_path, case):
    rng = np.random.default_rng(0)
    n = 300
    x = rng.normal(size=n)
    y = np.where(x + rng.normal(0, 1, n) > 0, "yes", "no")
    if case == "constant":
        cols, target = {"x": x, "label": ["same"] * n}, "'label' has only one class"
    elif case == "id":
        cols, target = {"x": x, "label": [f"user-{i:05d}" for i in range(n)]}, "looks like an ID"
    else:
        cols, target = {"x": x, "copy": y, "label": y}, "copy"
    path = tmp_path / f"{case}.csv"
    names = list(cols)
    path.write_text(",".join(names) + "\n" + "".join(",".join(str(cols[c][i]) for c in names) + "\n"
                                                    for i in range(n)), encoding="utf-8")
    code, _, err = cli("train", path, "--time-limit", "1m")
    assert code == 2 and target in err, err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # nothing half-written


def test_parquet_table_trains_like_its_csv(cli, tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rng = np.random.default_rng(1)
    n = 200
    x = rng.normal(size=n)
    city = rng.choice(["north", "south"], n).tolist()
    label = np.where(x + (np.array(city) == "north") > 0.5, "yes", "no").tolist()
    x_missing = [None if i % 17 == 0 else float(v) for i, v in enumerate(x)]
    path = tmp_path / "shop.parquet"
    pq.write_table(pa.table({"x": x_missing, "city": city, "label": label}), path)
    p = inspect_data(path)
    assert (p.kind, p.target, p.rows, p.classes, p.numeric_columns) == ("tabular", "label", 200, ["no", "yes"], 1)
    code, out, err = cli("train", path, "--json")
    assert code == 0, err
    assert last_json(out)["metrics"]["accuracy"] > 0.7


def test_the_default_stays_unless_another_is_clearly_better():
    from danlu.autorecipe.run import clearly_better

    assert not clearly_better(0.9375, 0.9062, "accuracy", 32)  # 1 text of 32: noise
    assert clearly_better(0.75, 0.5938, "accuracy", 32)  # 5 texts of 32: more than one standard error
    assert clearly_better(0.97, 0.96, "accuracy", 10_000) and not clearly_better(0.96, 0.96, "accuracy", 10_000)
    assert clearly_better(0.51, 0.50, "r2", 100) and not clearly_better(0.50, 0.50, "r2", 100)


def _events(path: Path, header: str, users: int = 60, with_time: bool = True, sep: str = ";") -> Path:
    """A purchase log: each user buys from one of three item groups, so there is something to learn."""
    rng = random.Random(0)
    rows = [header]
    for u in range(users):
        group = u % 3
        for k in range(rng.randint(6, 14)):
            item = f"SKU-{group * 20 + rng.randint(0, 19)}"
            when = f"{sep}2024-01-{1 + k:02d} 10:00" if with_time else ""
            rows.append(f"c{u}{sep}{item}{sep}{rng.choice(['5', '4', '', '3'])}{when}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_interaction_tables_are_recommendation(tmp_path):
    from danlu.recipe import load_recipe

    p = inspect_data(_events(tmp_path / "log.csv", "Customer ID;Product;Stars;When"))
    assert (p.kind, p.user_column, p.item_column, p.rating_column, p.time_column) == (
        "interactions", "Customer ID", "Product", "Stars", "When")
    assert p.users == 60 and p.items == 60
    c = choose(p)
    assert [k.name for k in c.candidates] == ["ease", "item_knn", "mf_ials"]
    rec = load_recipe(base=c.default.recipe)  # a valid recipe, written to the run as it is
    assert rec.model.name == "ease" and rec.data.name == "interactions"
    assert rec.recommend.split == "temporal" and rec.recommend.user_column == "Customer ID"
    untimed = choose(inspect_data(_events(tmp_path / "plain.csv", "user,item,rating", with_time=False, sep=",")))
    assert untimed.default.recipe["recommend"]["split"] == "random" and "leaking" in " ".join(untimed.reasons)
    # a table about customers with a label column is a table, whatever its id columns are called
    churn = tmp_path / "churn.csv"
    churn.write_text("customer_id,product,age,income,label\n" + "".join(
        f"c{k % 40},p{k % 7},{20 + k % 50},{1000 + k},{k % 2}\n" for k in range(200)), encoding="utf-8")
    assert inspect_data(churn).kind == "tabular"
    once = tmp_path / "once.csv"  # every user appears once: not a log of interactions
    once.write_text("user_id,item_id,rating\n" + "".join(f"u{k},i{k % 9},{k % 5}\n" for k in range(100)),
                    encoding="utf-8")
    assert inspect_data(once).kind == "tabular"


def test_train_interactions_without_a_recipe(cli, tmp_path):
    code, out, err = cli("train", _events(tmp_path / "log.csv", "Customer ID;Product;Stars;When"), "--json")
    assert code == 0, err
    assert "user-item interactions" in err
    result, run = _check_run(out, "auto-ease")
    board = json.loads((run / "auto.json").read_text(encoding="utf-8"))["leaderboard"]
    report = json.loads((run / "report.json").read_text(encoding="utf-8"))
    # each user's item group is learnt (EASE ~1.0 here), far above popularity (~0.3, a random top-20 of 60 items)
    assert board[0]["val"] > 0.8 and result["metrics"]["recall@20"] > report["popularity"]["recall@20"] + 0.4


def test_train_audio_folder_without_a_recipe(cli, tmp_path):
    from tests.test_audio import RATE, tone, write

    folder = tmp_path / "clips"
    for i in range(8):  # synthetic test data: rising and falling chirps, 0.4-0.6 s
        n = RATE * (4 + i % 3) // 10
        write(folder / "up" / f"{i}.wav", tone(np.geomspace(150 + 10 * i, 400, n), seconds=n / RATE))
        write(folder / "down" / f"{i}.flac", tone(np.geomspace(400, 150 + 10 * i, n), seconds=n / RATE))
    p = inspect_data(folder)
    assert (p.kind, p.classes, p.rows, p.sample_rates) == ("audio", ["down", "up"], 16, {"16000": 16})
    assert p.clip_seconds == (0.4, 0.5, 0.6)
    assert choose(p).default.recipe["data"]["seconds"] == 0.6
    code, out, err = cli("train", folder, "train.epochs=2", "model.widths=[8,8]", "--json")
    assert code == 0, err
    assert "audio clips in 2 classes" in err
    _check_run(out, "auto-audio-cnn")
