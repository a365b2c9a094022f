"""The column plan (danlu/data/columns.py), the target and leak checks, and old run folders still loading."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from danlu.data.columns import ColumnPlan, detect
from danlu.errors import DataError

OLD_RUN = Path(__file__).parent / "fixtures" / "old-tabular-run"  # written by main at 9c65b24 (one-hot schema)


def messy_table(n=300, seed=0):
    """IDs, free text, dates, categories with typos and case/space variants, numbers with gaps."""
    rng = np.random.default_rng(seed)
    cities = ["Paris", "Lyon", "Nice"]
    words = ["senior", "junior", "data", "software", "sales", "nurse", "teacher", "manager", "engineer", "analyst"]
    cols = {"customer_id": [], "code": [], "city": [], "title": [], "joined": [], "income": []}
    for i in range(n):
        cols["customer_id"].append(str(1000 + i))
        cols["code"].append(f"C{rng.integers(1e9):09d}")
        city = cities[i % 3]
        variant = rng.integers(6)
        city = city.upper() if variant == 0 else f" {city.lower()} " if variant == 1 else city
        if i in (5, 77):
            city = "Pariss"  # a typo: rare, pooled with the unseen values
        cols["city"].append(city)
        cols["title"].append(" ".join(rng.choice(words, size=rng.integers(2, 4))) + f" {rng.integers(90)}")
        cols["joined"].append(f"20{rng.integers(10, 24)}-{rng.integers(1, 13):02d}-{rng.integers(1, 29):02d}")
        cols["income"].append("" if rng.random() < 0.1 else f"{rng.lognormal(10, 1):.0f}")
    return cols


def test_column_kinds_are_detected_on_a_generated_table():
    cols = messy_table()
    kinds = {name: detect(name, values)["kind"] for name, values in cols.items()}
    assert kinds == {"customer_id": "id", "code": "id", "city": "category", "title": "text", "joined": "date",
                     "income": "numeric"}
    city = detect("city", cols["city"])
    assert city["values"] == ["lyon", "nice", "paris"] and city["pooled"] == 1  # "Pariss" seen twice: pooled
    assert detect("joined", cols["joined"])["format"] == "iso"
    assert detect("income", cols["income"])["missing"]


def test_few_distinct_numbers_stay_numbers_and_chinese_text_is_read_by_characters():
    assert detect("rating", [str(i % 5 + 1) for i in range(100)])["kind"] == "numeric"
    assert detect("year", [str(2000 + i) for i in range(10)] * 5)["kind"] == "numeric"  # not an ID: repeats
    rng = np.random.default_rng(0)
    chars = list("这个产品质量很好非常满意物流太慢了不推荐价格便宜")
    reviews = ["".join(rng.choice(chars, size=rng.integers(12, 30))) for _ in range(200)]
    spec = detect("review", reviews)
    assert spec["kind"] == "text" and spec["tokenizer"] == "char"
    assert detect("when", ["03/15/2021", "12/01/2020", "07/30/2019"] * 10)["format"] == "%m/%d/%Y"


def test_plan_encodes_codes_dates_and_text_and_unseen_values_safely():
    cols = messy_table()
    plan = ColumnPlan.fit(cols, np.arange(200))
    x = plan.transform(cols)
    inputs = plan.plan["inputs"]
    assert "customer_id" not in inputs and "code" not in inputs
    assert {"joined:year", "joined:month", "joined:weekday", "joined:days", "income:missing"} <= set(inputs)
    assert sum(name.startswith("title:hash") for name in inputs) == 32
    assert [inputs[j] for j in plan.plan["code_columns"]] == ["city", "title"]
    city = x[:, inputs.index("city")]
    assert city[0] == city[3] != 1 and city[5] == 1  # "Paris" = " paris " = "PARIS"; the typo is rare
    assert np.all(np.abs(x[:, : plan.plan["code_columns"][0]]) < 4)  # quantile-normal numbers, flags, log counts
    new = {k: [v[0]] for k, v in cols.items()} | {"city": ["Marseille"], "income": ["n/a"], "joined": [""]}
    row = plan.transform(new)[0]
    assert row[inputs.index("city")] == 1 and row[inputs.index("income:missing")] == 1
    notes = " ".join(plan.notes())
    assert "'customer_id' looks like an ID" in notes and "'title': free text" in notes and "hashed" in notes
    assert "'joined': dates" in notes


def write_csv(path, header, rows):
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    return path


def _train(path, target, extra=(), model="lightgbm"):
    from danlu.api import train

    return train("table-lightgbm" if model == "lightgbm" else "table-net",
                 ["data.name=csv", f"data.path={path}", f"data.target={target}", "model.n_estimators=30"
                  if model == "lightgbm" else "train.epochs=2", *extra], runs_dir=path.parent / "runs", progress=False)


@pytest.mark.parametrize("case", ["equal", "code", "threshold", "regression-copy", "regression-log"])
def test_a_column_that_leaks_the_target_is_refused_before_any_file(tmp_path, case):
    rng = np.random.default_rng(0)
    n = 400
    x = rng.normal(size=n)
    label = np.where(x > 0.3, "yes", "no")
    leak = {"equal": label, "code": np.where(label == "yes", "Y1", "N0"),
            "threshold": np.round(x * 100 + 7, 2), "regression-copy": np.round(x * 2 + 1, 4),
            "regression-log": np.log(np.round(np.exp(x) * 50, 4))}[case]
    target = {"regression-copy": np.round(x * 2 + 1, 4), "regression-log": np.round(np.exp(x) * 50, 4)}.get(case, label)
    rows = [[f"{rng.normal():.3f}", leak[i], target[i]] for i in range(n)]
    path = write_csv(tmp_path / "t.csv", ["noise", "leaky", "y"], rows)
    with pytest.raises(DataError, match="column 'leaky' leaks the target 'y'") as e:
        _train(path, "y")
    assert "data.exclude=[leaky]" in e.value.hint
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())
    if case != "threshold":
        return
    # left out, the rest trains; and the check can be turned off for a column that truly is that good
    assert _train(path, "y", ["data.exclude=[leaky]"]).status == "done"
    assert _train(path, "y", ["data.check_leaks=false"]).status == "done"


def test_targets_with_one_value_or_one_id_per_row_are_refused(tmp_path):
    rng = np.random.default_rng(0)
    rows = [[f"{rng.normal():.3f}", "7.5", f"R{i:05d}", str(i)] for i in range(100)]
    path = write_csv(tmp_path / "t.csv", ["a", "const", "ref", "row"], rows)
    with pytest.raises(DataError, match="one value throughout"):
        _train(path, "const")
    with pytest.raises(DataError, match="looks like an ID"):
        _train(path, "ref")
    with pytest.raises(DataError, match="looks like an ID"):
        _train(path, "row", ["data.task=regression"])
    assert not (tmp_path / "runs").exists()


def test_tabular_net_trains_on_the_plan_and_predicts_raw_rows(tmp_path):
    cols = messy_table(n=300)
    rng = np.random.default_rng(1)
    y = ["big" if (c.strip().lower() == "paris") ^ (rng.random() < 0.1) else "small" for c in cols["city"]]
    names = list(cols)
    path = write_csv(tmp_path / "m.csv", [*names, "y"], [[cols[k][i] for k in names] + [y[i]] for i in range(300)])
    result = _train(path, "y", ["data.exclude=[code]", "train.epochs=15"], model="net")
    schema = json.loads((result.run / "schema.json").read_text())
    assert "code" not in schema["features"] and schema["table"]["cardinalities"][0] == 5  # 3 cities + 0 and 1
    assert result.metrics["accuracy"] > 0.8
    from danlu.predictor import Predictor

    p = Predictor.load(result.run)
    row = {k: cols[k][0] for k in schema["features"]} | {"city": "PARIS"}
    assert p.predict([row])[0]["top"][0]["label"] == "big"
    from danlu.export import export_onnx

    assert export_onnx(result.run, say=lambda *_: None).parity.agreement == 1.0  # embeddings export too


def test_old_one_hot_run_folders_still_load_and_predict(tmp_path):
    from danlu.predictor import Predictor

    run = shutil.copytree(OLD_RUN, tmp_path / "old")
    schema = json.loads((run / "schema.json").read_text())
    assert "table" not in schema and schema["categories"] == {"color": ["blue", "green", "red"]}
    p = Predictor.load(run)
    assert not p.schema.table
    got = p.predict(["4.5,red", {"size": 1.5, "color": "blue"}])
    assert all(np.isfinite(r["prediction"]["price"]) for r in got)
    assert abs(got[0]["prediction"]["price"] - 43.5834846496582) < 1e-4  # what main predicted for it


def test_one_feature_whose_function_is_the_target_is_the_task_not_a_leak(tmp_path):
    """Article 4 fits y = 2x: with x the only feature, learning that function is the job. A copy of the target
    is still refused."""
    x = np.linspace(-3, 3, 300)
    path = write_csv(tmp_path / "line.csv", ["x", "y"], [[f"{v:.4f}", f"{2 * v:.4f}"] for v in x])
    assert _train(path, "y").status == "done"
    copy = write_csv(tmp_path / "copy.csv", ["x", "y"], [[f"{v:.4f}", f"{v:.4f}"] for v in x])
    with pytest.raises(DataError, match="holds the target's own values"):
        _train(copy, "y")
