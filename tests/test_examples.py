"""Each article's example script runs end to end in its small mode (--small: a slice of the data, 1-2 epochs)
and meets its small-mode floor; full-data runs against the real targets are benchmarks/examples.py."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SHARED

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = {  # script → the shared dataset folder it reads
    "mnist_mlp": "mnist",
    "cifar10_cnn": "cifar10-images",
    "chinese_reviews": "chnsenticorp",
    "mnist_cnn_and_linear_regression": "mnist",
    "ants_bees_transfer": "hymenoptera",
}


def test_every_example_is_short_and_uses_only_the_api():
    scripts = sorted(p.stem for p in (REPO / "examples").glob("*.py"))
    assert scripts == sorted(EXAMPLES)
    for name in scripts:
        text = (REPO / "examples" / f"{name}.py").read_text(encoding="utf-8")
        assert len(text.splitlines()) <= 40, name
        danlu_imports = [line for line in text.splitlines() if "import danlu" in line or "from danlu" in line]
        assert danlu_imports == ["import danlu"], name
        used = set(re.findall(r"(?<![\w`])danlu\.(\w+)\(", text))
        assert used <= {"train", "predict", "evaluate"}, (name, used)


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_example_small_mode(name, tmp_path):
    data = SHARED / "datasets"
    if not (data / EXAMPLES[name]).is_dir():
        pytest.skip(f"needs {data / EXAMPLES[name]}")
    env = {**os.environ, "DANLU_DATA": str(data), "PYTHONPATH": str(REPO), "DANLU_EXAMPLE_SMALL": "1"}
    proc = subprocess.run([sys.executable, str(REPO / "examples" / f"{name}.py")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["example"] == name and result["small"] is True
    assert result["accuracy"] >= result["target"]
    assert Path(result["run"]).is_relative_to(tmp_path)  # runs go to ./runs of the working folder
