"""A model too large for memory is refused before it is allocated (exit 2 with the parameter count), for
every model in the registry: its parameters are counted on the meta device first."""

from __future__ import annotations

import pytest

from danlu.errors import DanluError
from danlu.models import build, count_parameters, memory
from danlu.models.specs import MODELS
from danlu.schema import Schema

IMAGE = Schema("image", "classification", [3, 32, 32], classes=["a", "b"])
TEXT = Schema("text", "classification", [16], classes=["a", "b"],
              text={"tokenizer": "word", "vocab_size": 100, "pad_id": 0, "max_len": 16})
# transformer's size is the pretrained files' on disk; lightgbm's trees are no torch parameters (LightGBM sizes them)
SMALL_MODELS = [n for n in MODELS if n not in ("transformer", "lightgbm")]


AUDIO = Schema("audio", "classification", [8000], classes=["a", "b"],
               audio={"sample_rate": 16000, "seconds": 0.5, "fit": "center", "samples": 8000})


def _table_schema() -> Schema:
    """A tabular schema with a column plan (numbers, a category, a date), as tabular_net reads it."""
    if not _TABLE:
        import tempfile
        from pathlib import Path

        from danlu.prepare import prepare
        from danlu.recipe import load_recipe

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "t.csv"
            rows = [f"{i % 7},{'abc'[i % 3]},2024-01-{1 + i % 28:02d},{i % 2}" for i in range(120)]
            path.write_text("x,colour,day,y\n" + "\n".join(rows) + "\n")
            _TABLE.append(prepare(load_recipe("table-net", [f"data.path={path}", "data.target=y"]))[1])
    return _TABLE[0]


_TABLE: list[Schema] = []


def _schema(name: str) -> Schema:
    kinds = MODELS[name][1]
    if "tabular" in kinds and name != "mlp":
        return _table_schema()
    return TEXT if "text" in kinds else AUDIO if "audio" in kinds else IMAGE


def _options(name: str) -> dict:
    if name == "table_ensemble":  # its members are the table models, whose runs it is assembled from
        return {"members": [{"name": "tabular_net", "weight": 0.5, "run": "net-run"},
                            {"name": "lightgbm", "weight": 0.5, "run": "gbm-run"}]}
    return {"weights": None} if "weights" in MODELS[name][0].model_fields else {}


def test_the_issue_case_is_refused_with_the_number(cli, tmp_path):
    code, _, err = cli("train", "digits-mlp", "model.hidden=[1000000000]")
    assert code == 2, err
    # Linear(64, 1e9) + BatchNorm(1e9) (weights, biases, running stats) + Linear(1e9, 10)
    assert "model 'mlp' would have 79,000,000,011 parameters" in err
    assert "GiB of memory" in err and "available" in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize(("name", "options"), [
    ("mlp", {"hidden": [10**6, 10**6]}),
    ("cnn", {"channels": [10**6], "kernel_size": 3}),
    ("simple_cnn", {"hidden": 10**9}),
    ("lstm", {"embed_dim": 10**9}),
    ("article_lstm", {"hidden": 10**6}),
    ("textcnn", {"channels": 10**8}),
])
def test_huge_options_are_refused_for_every_family(name, options):
    with pytest.raises(DanluError, match=r"would have [\d,]+ parameters: training needs about"):
        build(name, options, _schema(name), training=True)


def test_a_huge_vocabulary_in_schema_json_is_refused():
    schema = Schema("text", "classification", [16], classes=["a", "b"],
                    text={"tokenizer": "word", "vocab_size": 10**12, "pad_id": 0, "max_len": 16})
    with pytest.raises(DanluError, match="inference needs about"):
        build("lstm", {}, schema)


def test_sizes_past_int64_are_refused():
    with pytest.raises(DanluError, match="too large to even count"):
        build("mlp", {"hidden": [10**10, 10**10]}, IMAGE)


@pytest.mark.parametrize("name", SMALL_MODELS)
def test_every_model_is_measured_against_available_memory(name, monkeypatch):
    """With 1 KiB left every model is refused, training or not; with the real memory each builds."""
    model = build(name, _options(name), _schema(name))
    total = count_parameters(model)[0] + sum(b.numel() for b in model.buffers())
    assert memory.count_on_meta(lambda: build(name, _options(name), _schema(name))) == total  # meta = real
    monkeypatch.setattr(memory, "available_memory", lambda: 1 << 10)
    for training in (False, True):
        with pytest.raises(DanluError, match=f"{total:,} parameters"):
            build(name, _options(name), _schema(name), training=training)


def test_inference_needs_less_than_training(monkeypatch):
    params = memory.count_on_meta(lambda: build("mlp", {"hidden": [256]}, IMAGE))
    monkeypatch.setattr(memory, "available_memory", lambda: params * 4 * 3)  # 3 copies: inference yes, training no
    build("mlp", {"hidden": [256]}, IMAGE)
    with pytest.raises(DanluError, match="training needs"):
        build("mlp", {"hidden": [256]}, IMAGE, training=True)


def test_available_memory_is_plausible():
    have = memory.available_memory()
    assert 1 << 26 < have < 1 << 50  # between 64 MiB and a petabyte
