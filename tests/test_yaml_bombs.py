"""YAML alias bombs: a few hundred bytes of nested anchors are refused (exit 2), never expanded.

The CLI cases run in a subprocess with a timeout: without the bound they never finish (and take gigabytes),
so a hang must fail the test instead of the suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from danlu import safe_yaml
from danlu.cli.dispatch import main
from danlu.errors import RecipeError
from danlu.recipe import load_recipe


def bomb(levels: int = 9, width: int = 9) -> str:
    """``width ** levels`` values (387 million for 9 x 9) from about 500 bytes."""
    lines = ["name: bomb", 'a0: &a0 ["lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    lines.append(f"model: {{name: mlp, hidden: *a{levels - 1}}}")
    return "\n".join(lines) + "\n"


def mapping_bomb(levels: int = 9) -> str:
    """The same with mappings and merge keys instead of lists."""
    lines = ["l0: &l0 {x: 1, y: 2}"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} {{" + ", ".join(f"k{j}: *l{i - 1}" for j in range(9)) + "}")
    lines.append(f"train: {{<<: *l{levels - 1}}}")
    return "\n".join(lines) + "\n"


def test_bomb_is_small():
    assert len(bomb().encode()) < 600


@pytest.mark.parametrize("text", [bomb(), mapping_bomb(), "a: &a [1, *a]\n", "a: &a {b: *a}\n"],
                         ids=["lists", "mappings", "recursive-list", "recursive-mapping"])
def test_loader_refuses_expansion_past_the_budget(text):
    with pytest.raises(safe_yaml.AliasBomb):
        safe_yaml.load(text)
    with pytest.raises(yaml.YAMLError):  # callers that catch YAMLError catch it too
        safe_yaml.compose(text)


def test_aliases_within_the_budget_still_work():
    text = "sizes: &s [64, 32]\nmodel: {name: mlp, hidden: *s}\nbase: &b {lr: 0.01}\ntrain: {<<: *b, epochs: 2}\n"
    assert safe_yaml.load(text)["model"]["hidden"] == [64, 32]
    assert safe_yaml.load(text)["train"] == {"lr": 0.01, "epochs": 2}
    under = bomb(levels=4, width=9)  # 9**3 = 729 leaves: a lot, but not a bomb
    hidden = safe_yaml.load(under)["model"]["hidden"]
    assert len(hidden) == 9 and len(hidden[0]) == 9 and len(hidden[0][0]) == 9
    assert yaml.safe_load(under) == safe_yaml.load(under)


def test_recipe_loading_refuses_a_bomb(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(bomb(), encoding="utf-8")
    with pytest.raises(RecipeError, match=r"bomb.yaml, line \d+.*refused: its aliases expand"):
        load_recipe(str(path))
    with pytest.raises(RecipeError):  # an override is YAML too (an unreadable one stays a string)
        load_recipe("digits-mlp", ["train.epochs=" + bomb()])


@pytest.mark.parametrize("text", ["[" * 5000 + "]" * 5000, "a: " + "{b: " * 5000 + "1" + "}" * 5000],
                         ids=["lists", "mappings"])
def test_deep_nesting_is_refused_not_a_recursion_error(text, tmp_path):
    with pytest.raises(safe_yaml.AliasBomb, match="nested more than"):
        safe_yaml.load(text)
    path = tmp_path / "deep.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RecipeError, match="nested more than"):
        load_recipe(str(path))
    with pytest.raises(RecipeError):
        load_recipe("digits-mlp", [f"model.hidden={text}"])


def _danlu(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    return subprocess.run([sys.executable, "-m", "danlu", *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env=env)


@pytest.fixture
def bomb_file(tmp_path) -> Path:
    path = tmp_path / "bomb.yaml"
    path.write_text(bomb(), encoding="utf-8")
    return path


def test_train_and_recipes_refuse_a_bomb(bomb_file, tmp_path):
    for args in (["train", str(bomb_file), "--runs-dir", str(tmp_path / "runs")], ["recipes", str(bomb_file)]):
        done = _danlu(*args)
        assert done.returncode == 2, done.stderr
        assert "alias" in done.stderr and "bomb.yaml" in done.stderr
    assert not (tmp_path / "runs").exists()  # refused before a run folder was made


def test_a_run_holding_a_bomb_is_refused(tmp_path, capsys):
    runs = tmp_path / "runs"
    assert main(["train", "digits-mlp", "train.epochs=1", "--quiet", "--runs-dir", str(runs)]) == 0
    run = next(runs.iterdir())
    (run / "recipe.yaml").write_text(bomb(), encoding="utf-8")
    for args in (["predict", str(run), "-"], ["serve", str(run), "--port", "0"], ["train", "--resume", str(run)]):
        done = _danlu(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert "recipe.yaml" in done.stderr and "alias" in done.stderr, done.stderr
    capsys.readouterr()
    for args in (["evaluate", str(run)], ["export", str(run)], ["runs", "show", str(run), "--json"]):  # in-process:
        assert main(args) == 2  # the same reader as above, which did not hang
        assert "alias" in capsys.readouterr().err
