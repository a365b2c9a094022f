"""Class names come from the user's data (folder names, CSV labels, schema.json): ANSI escapes, newlines,
bidi overrides and pipes in them are shown escaped on the terminal and cannot break report.md's tables."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from danlu.printable import markdown_text, terminal_safe
from tests.conftest import last_json

NASTY = ["clear\x1b[2J\x1b[31mred", "two\nlines", "a|b", "rtl\u202egnp.exe", "bell\x07\r"]
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f\u202e]")  # control characters but the tab and newline (ours)


def test_terminal_safe_escapes_controls_and_keeps_the_rest():
    assert terminal_safe("\x1b[2J") == "\\x1b[2J"
    assert terminal_safe("a\nb") == "a\\nb" and terminal_safe("a\nb", keep_newlines=True) == "a\nb"
    assert terminal_safe("\u202e") == "\\u202e"
    assert terminal_safe("猫 é 🐱 not_hotdog") == "猫 é 🐱 not_hotdog"
    for name in NASTY:
        assert not RAW.search(terminal_safe(name)) and "\n" not in terminal_safe(name)


def test_markdown_text_cannot_end_a_cell():
    for name in NASTY + ["`code`", "<img src=x>", "back\\|slash"]:
        cell = markdown_text(name)
        assert "\n" not in cell and not RAW.search(cell)
        assert not re.search(r"(?<!\\)(\\\\)*\|", cell)  # every pipe is escaped
        assert "<" not in cell and ">" not in cell


def _table_rows(md: str) -> list[list[str]]:
    """Cells of each Markdown table row (pipes not preceded by a backslash split cells)."""
    rows = []
    for line in md.splitlines():
        if line.startswith("| ") and not line.startswith("| ---"):
            rows.append(re.split(r"(?<!\\) \| ", line.strip("| ")))
    return rows


@pytest.fixture
def nasty_folder(tmp_path) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    for k, name in enumerate(NASTY):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(8):
            pixels = np.full((8, 8, 3), 40 * k, np.uint8) + rng.integers(0, 20, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def test_image_folder_class_names_reach_neither_terminal_nor_table_raw(cli, nasty_folder):
    data = ["data.name=imagefolder", f"data.root={nasty_folder}", "data.image_size=8", "data.channels=3"]
    code, out, err = cli("data", "describe", "imagefolder-cnn", *data)
    assert code == 0, err
    assert not RAW.search(out) and "two\\nlines" in out
    code, out, err = cli("train", "imagefolder-cnn", *data, "model={name: mlp, hidden: [16]}", "train.epochs=1",
                         "data.val_fraction=0.2", "data.test_fraction=0.3", "--quiet")
    assert code == 0, err
    assert not RAW.search(out) and not RAW.search(err)
    run = Path(next(line for line in out.splitlines() if line.startswith("run folder:")).split()[2])
    md = (run / "report.md").read_text(encoding="utf-8")
    per_class = [r for r in _table_rows(md) if len(r) == 5 and r[0] != "class"]
    assert len(per_class) == len(NASTY)  # one row per class, five cells each: no name split a row or a cell
    assert any(r[0] == "a\\|b" for r in per_class)
    code, out, err = cli("predict", run, str(next((nasty_folder / "a|b").iterdir())), "--top-k", "5")
    assert code == 0, err
    assert not RAW.search(out) and len(out.strip().splitlines()) == 1
    code, out, _ = cli("predict", run, str(next((nasty_folder / "a|b").iterdir())), "--json")
    labels = {t["label"] for t in last_json(out)["predictions"][0]["top"]}
    assert labels <= set(NASTY)  # JSON carries the names as they are (escaped by JSON itself)


def test_schema_json_class_names_are_escaped_in_predict(cli, tmp_path):
    code, out, err = cli("train", "breast-cancer-mlp", "train.epochs=1", "--json", "--quiet")
    assert code == 0, err
    run = Path(last_json(out)["run"])
    schema = json.loads((run / "schema.json").read_text())
    schema["classes"] = ["\x1b]0;owned\x07", "ok\nFAKE\t1.000"]
    (run / "schema.json").write_text(json.dumps(schema))
    code, out, err = cli("predict", run, ",".join(["1"] * 30))
    assert code == 0, err
    assert not RAW.search(out) and len(out.strip().splitlines()) == 1
    assert "\\x1b]0;owned\\x07" in out and "ok\\nFAKE\\t1.000" in out


def test_csv_labels_in_report_and_notes(cli, tmp_path):
    rng = np.random.default_rng(1)
    labels = ["x|y", "\x1b[1mbold", "fine"]
    lines = ["f1,f2,label"] + [f"{rng.normal():.3f},{rng.normal():.3f},\"{labels[i % 3]}\"" for i in range(60)]
    lines.append("0,0,\"rare\nclass\"")  # one row: a note about scarce classes quotes it
    path = tmp_path / "t.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, out, err = cli("train", "breast-cancer-mlp", "data.name=csv", f"data.path={path}", "data.target=label",
                         "train.epochs=1", "data.test_fraction=0.3")
    assert code == 0, err
    assert not RAW.search(out) and not RAW.search(err)
    assert "rare\\nclass" in err  # the note, escaped
