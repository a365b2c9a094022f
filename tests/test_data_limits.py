"""Data readers against hostile files: named pipes, very wide CSVs, very long fields.

The FIFO cases run in a subprocess with a timeout: reading a pipe blocks forever, which must fail the
test rather than hang the suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from danlu.data.tabular import MAX_COLUMNS, read_csv
from danlu.data.text.files import MAX_FIELD_CHARS
from danlu.errors import DataError

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")


def _danlu(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]), DANLU_CACHE=str(cwd / "cache"))
    return subprocess.run([sys.executable, "-m", "danlu", *args], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL, env=env, cwd=cwd)


@pytest.fixture
def folder_with_fifo(tmp_path) -> Path:
    from PIL import Image

    root = tmp_path / "images"
    rng = np.random.default_rng(0)
    for k, name in enumerate(["cat", "dog"]):
        (root / name).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8) // (k + 1)).save(root / name / f"{i}.png")
    os.mkfifo(root / "cat" / "x.png")
    return root


def test_a_fifo_in_an_image_folder_is_skipped(folder_with_fifo, tmp_path):
    data = ["data.name=imagefolder", f"data.root={folder_with_fifo}", "data.image_size=8"]
    done = _danlu("data", "describe", "imagefolder-cnn", *data, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "x.png" in done.stdout and "not a regular file" in done.stdout
    done = _danlu("train", "imagefolder-cnn", *data, "model={name: mlp, hidden: [8]}", "train.epochs=1", "--quiet",
                  "data.val_fraction=0.2", "data.test_fraction=0.2", "--runs-dir", str(tmp_path / "runs"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    done = _danlu("predict", str(next((tmp_path / "runs").iterdir())), str(folder_with_fifo / "cat"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.strip().splitlines()) == 6  # the six images, not the pipe


@pytest.mark.parametrize("name", ["data.csv", "texts.tsv"])
def test_a_fifo_as_the_data_file_is_refused(tmp_path, name):
    os.mkfifo(tmp_path / name)
    recipe = "breast-cancer-mlp" if name.endswith(".csv") else "chnsenticorp-lstm"
    source = "data.name=csv" if name.endswith(".csv") else "data.name=text"
    done = _danlu("data", "describe", recipe, source, f"data.path={tmp_path / name}", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "not a regular file" in done.stderr and name in done.stderr


def _wide_csv(path: Path, columns: int, rows: int = 4) -> Path:
    rng = np.random.default_rng(0)
    with path.open("w") as f:
        f.write(",".join(f"c{j}" for j in range(columns)) + ",y\n")
        for i in range(rows):
            f.write(",".join(f"{v:.1f}" for v in rng.normal(size=columns)) + f",{i % 2}\n")
    return path


def test_too_many_columns_is_a_clear_error(tmp_path):
    path = _wide_csv(tmp_path / "wide.csv", MAX_COLUMNS, rows=1)  # + the target column: one past the limit
    with pytest.raises(DataError, match=f"{MAX_COLUMNS + 1:,} columns; danlu reads at most {MAX_COLUMNS:,}"):
        read_csv(path)


def test_wide_csv_trains(cli, tmp_path):
    """10,000 columns end to end (the time per column is measured in benchmarks/wide_csv.py)."""
    path = _wide_csv(tmp_path / "wide.csv", 10_000, rows=30)
    code, _, err = cli("train", "breast-cancer-mlp", "data.name=csv", f"data.path={path}", "train.epochs=1",
                       "model.hidden=[4]", "--quiet")
    assert code == 0, err


def test_long_fields_are_read_up_to_the_bound(cli, tmp_path):
    long = "x" * 200_000  # over Python's default csv limit of 131,072 characters
    table = tmp_path / "t.csv"
    table.write_text("a,b,y\n" + "".join(f"{i},\"{long if i == 0 else 'short'}\",{i % 2}\n" for i in range(20)))
    header, body = read_csv(table)
    assert len(body[0][1]) == 200_000
    texts = tmp_path / "texts.csv"
    rows = [f"\"{long if i == 0 else 'good, fine'} {i}\",{'pos' if i % 2 else 'neg'}\n" for i in range(20)]
    texts.write_text("text,label\n" + "".join(rows))
    code, out, err = cli("data", "describe", "chnsenticorp-lstm", "data.name=text", f"data.path={texts}",
                         "data.tokenizer=char")
    assert code == 0, err


def test_fields_past_the_bound_are_a_user_error(cli, tmp_path):
    huge = "y" * (MAX_FIELD_CHARS + 1)
    table = tmp_path / "t.csv"
    table.write_text(f"a,b,y\n1,2,0\n3,\"{huge}\",1\n")
    with pytest.raises(DataError, match=r"t.csv, line \d+: a field is longer than"):
        read_csv(table)
    texts = tmp_path / "texts.csv"
    texts.write_text(f"text,label\nfine,pos\n\"{huge}\",neg\n")
    code, _, err = cli("data", "describe", "chnsenticorp-lstm", "data.name=text", f"data.path={texts}")
    assert code == 2 and "a field is longer than" in err and "texts.csv, line 3" in err, err
