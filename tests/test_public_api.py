"""The public API is guarded: every ``danlu.*`` function works twice in one process, no submodule shadows a
public name, the README's Python section shows exactly ``danlu.__all__``, and run folders written by an
earlier danlu still load, predict, export and resume."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import danlu

REPO = Path(__file__).resolve().parents[1]
PACKAGE = Path(danlu.__file__).parent
OLD_RUNS = Path(__file__).parent / "fixtures" / "old-runs"


def test_no_submodule_shares_a_name_with_a_public_attribute():
    """`danlu.tune` was both a function and a submodule: importing the module replaced the function."""
    clashes = [n for n in danlu.__all__ if (PACKAGE / f"{n}.py").exists() or (PACKAGE / n / "__init__.py").exists()]
    assert not clashes


def test_the_readme_python_section_shows_every_public_name():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Python", 1)[1].split("\n## ", 1)[0]
    used = set(re.findall(r"\bdanlu\.([A-Za-z_]\w*)", section))
    assert used == set(danlu.__all__), (f"missing from the README: {set(danlu.__all__) - used}; "
                                        f"not public: {used - set(danlu.__all__)}")


def _digit_png(path: Path) -> Path:
    from sklearn.datasets import load_digits

    pixels = (load_digits().images[0] * 255 / 16).astype(np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def test_every_public_function_works_twice_in_one_process(tmp_path):
    png = _digit_png(tmp_path / "digit.png")
    for attempt in range(2):
        recipe = danlu.load_recipe("digits-mlp", ["train.epochs=1", "model.hidden=[16]"])
        assert isinstance(recipe, danlu.Recipe)
        result = danlu.train(recipe, runs_dir=tmp_path / f"runs{attempt}", progress=False, plots=False)
        assert danlu.evaluate(result.run, "val")["metrics"]["accuracy"] >= 0
        assert danlu.predict(result.run, [str(png)], top_k=1)[0]["top"][0]["label"] in recipe_classes(result.run)
        predictor = danlu.load_run(result.run)
        assert isinstance(predictor, danlu.Predictor)
        why = danlu.explain(result.run, [str(png)], method="saliency")
        assert why["explanations"], why
        study = danlu.tune("digits-mlp", ["train.epochs=1", "model.hidden=[16]"], trials=1,
                           study=f"twice{attempt}", runs_dir=tmp_path / "studies")
        assert study.best is not None
        with pytest.raises(danlu.DanluError, match="adm"):
            danlu.train("digits-mlp", ["train.optimizer=adm"], runs_dir=tmp_path, progress=False)


def recipe_classes(run: Path) -> list[str]:
    return json.loads((run / "schema.json").read_text())["classes"]


@pytest.fixture
def old_runs(tmp_path) -> Path:
    """Copies of the fixture runs (written by danlu at ccdde35, before the relayout): tests may change them."""
    dest = tmp_path / "old-runs"
    shutil.copytree(OLD_RUNS, dest)
    return dest


def test_a_run_folder_from_before_the_relayout_loads_predicts_and_exports(old_runs, tmp_path, cli):
    run = old_runs / "digits-mlp-done"
    png = _digit_png(tmp_path / "digit.png")
    rows = danlu.predict(run, [str(png)], top_k=2)
    assert len(rows[0]["top"]) == 2
    code, out, err = cli("runs", "show", str(run), "--json")
    assert code == 0, err
    code, out, err = cli("export", str(run), "--json")
    assert code == 0, err  # the parity check against parity.safetensors passes
    assert (run / "model.onnx").is_file()


def test_a_run_interrupted_before_the_relayout_resumes_to_the_same_numbers(old_runs):
    """The old code trained digits-mlp-done uninterrupted and digits-mlp-interrupted for one epoch of the same
    recipe; resumed by today's code, the second ends exactly where the first did."""
    result = danlu.train(resume=old_runs / "digits-mlp-interrupted", progress=False, plots=False)
    expected = json.loads((old_runs / "digits-mlp-done" / "report.json").read_text())["metrics"]
    assert result.metrics["accuracy"] == pytest.approx(expected["accuracy"], abs=1e-9)
    status = json.loads((result.run / "status.json").read_text())
    assert status["status"] == "done" and status["epochs"] == 3
