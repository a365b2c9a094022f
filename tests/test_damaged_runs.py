"""A damaged run folder is the user's problem to fix, not a bug of ours: every verb that loads a run
(predict, evaluate, export, serve) exits 2 with a message naming the file and what is wrong with it.

Each case below damages one file of a freshly trained run in its own way (as a disk error, a bad copy or
a hand edit would) and runs every verb on it.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from danlu.cli.dispatch import main
from tests.conftest import last_json

TEXT_POS = ["very good hotel", "clean room and good service", "great breakfast", "good good good"]
TEXT_NEG = ["dirty room", "bad service never again", "noisy and bad", "bad bad bad"]


def _train(runs: Path, *args: str) -> Path:
    code = main(["train", *args, "train.epochs=1", "--json", "--quiet", "--runs-dir", str(runs)])
    assert code == 0
    return runs


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> dict[str, Path]:
    """One trained run per kind of data; each case damages a copy."""
    root = tmp_path_factory.mktemp("pristine")
    text = root / "texts.tsv"
    text.write_text("label\ttext\n" + "".join(f"pos\t{t}\n" for t in TEXT_POS * 8)
                    + "".join(f"neg\t{t}\n" for t in TEXT_NEG * 8), encoding="utf-8")
    runs = {}
    for kind, args in {"image": ["digits-mlp"], "tabular": ["breast-cancer-mlp"],
                       "text": ["chnsenticorp-lstm", "data.name=text", f"data.path={text}", "data.tokenizer=word",
                                "data.max_len=8", "model.embed_dim=8", "model.hidden=8"]}.items():
        _train(root / kind, *args)
        runs[kind] = next((root / kind).iterdir())
    return runs


# ---------------------------------------------------------------- the damage


def _edit_json(name: str, change: Callable[[dict], object]) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        data = json.loads((run / name).read_text(encoding="utf-8"))
        change(data)
        (run / name).write_text(json.dumps(data), encoding="utf-8")
    return damage


def _set(key: str, value: object) -> Callable[[dict], None]:
    return lambda d: d.__setitem__(key, value)


def _bytes(name: str, content: bytes | Callable[[bytes], bytes]) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        old = (run / name).read_bytes()
        (run / name).write_bytes(content(old) if callable(content) else content)
    return damage


def _tensors(change: Callable[[dict], dict]) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        path = run / "model.safetensors"
        save_file(change(load_file(str(path))), str(path))
    return damage


def _first_weight(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[dict], dict]:
    def change(t: dict) -> dict:
        name = next(k for k, v in t.items() if v.dim() == 2)
        return {**t, name: fn(t[name])}
    return change


def _nan(t: torch.Tensor) -> torch.Tensor:
    t = t.clone()
    t.view(-1)[3] = math.nan
    return t


def _inf(t: torch.Tensor) -> torch.Tensor:
    t = t.clone()
    t.view(-1)[0] = math.inf
    return t


def _huge_header(old: bytes) -> bytes:
    return (2**40).to_bytes(8, "little") + old[8:]


def _header_not_json(old: bytes) -> bytes:
    n = int.from_bytes(old[:8], "little")
    return old[:8] + b"\x00" * n + old[8 + n:]


SCHEMA, WEIGHTS = "schema.json", "model.safetensors"
# id → (kinds it applies to, damage, file named in the message, words that say what is wrong)
CASES: dict[str, tuple[tuple[str, ...], Callable[[Path], None], str, str]] = {
    "schema-not-json": (("image",), _bytes(SCHEMA, b"{\"kind\": \"image\", "), SCHEMA, "not valid JSON"),
    "schema-empty": (("image",), _bytes(SCHEMA, b""), SCHEMA, "not valid JSON"),
    "schema-not-utf8": (("image",), _bytes(SCHEMA, b"{\"kind\": \"\xff\xfe\"}"), SCHEMA, "JSON"),
    "schema-a-list": (("image",), _bytes(SCHEMA, b"[1, 2, 3]"), SCHEMA, "JSON object"),
    "schema-no-kind": (("image",), _edit_json(SCHEMA, lambda d: d.pop("kind")), SCHEMA, "kind"),
    "schema-no-input-shape": (("image",), _edit_json(SCHEMA, lambda d: d.pop("input_shape")), SCHEMA, "input_shape"),
    "schema-input-shape-abc": (("image",), _edit_json(SCHEMA, _set("input_shape", "abc")), SCHEMA, "input_shape"),
    "schema-input-shape-strings": (("image",), _edit_json(SCHEMA, _set("input_shape", ["1", "8", "8"])), SCHEMA,
                                   "input_shape"),
    "schema-input-shape-2d": (("image",), _edit_json(SCHEMA, _set("input_shape", [8, 8])), SCHEMA, "input_shape"),
    "schema-input-shape-negative": (("image",), _edit_json(SCHEMA, _set("input_shape", [1, -8, 8])), SCHEMA,
                                    "input_shape"),
    "schema-input-shape-huge": (("image",), _edit_json(SCHEMA, _set("input_shape", [1, 10**9, 8])), SCHEMA,
                                "input_shape"),
    "schema-input-shape-other-channels": (("image",), _edit_json(SCHEMA, _set("input_shape", [3, 8, 8])), WEIGHTS,
                                          "shape"),
    "schema-std-zero": (("image",), _edit_json(SCHEMA, _set("std", [0])), SCHEMA, "std"),
    "schema-std-string": (("image",), _edit_json(SCHEMA, _set("std", "abc")), SCHEMA, "std"),
    "schema-mean-nan": (("image",), _edit_json(SCHEMA, _set("mean", [math.nan])), SCHEMA, "mean"),
    "schema-mean-wrong-length": (("image",), _edit_json(SCHEMA, _set("mean", [0.1, 0.2])), SCHEMA, "mean"),
    "schema-kind-unknown": (("image",), _edit_json(SCHEMA, _set("kind", "video")), SCHEMA, "kind"),
    "schema-task-unknown": (("image",), _edit_json(SCHEMA, _set("task", "ranking")), SCHEMA, "task"),
    "schema-classes-string": (("image",), _edit_json(SCHEMA, _set("classes", "0123456789")), SCHEMA, "classes"),
    "schema-classes-numbers": (("image",), _edit_json(SCHEMA, _set("classes", list(range(10)))), SCHEMA, "classes"),
    "schema-classes-twice": (("image",), _edit_json(SCHEMA, _set("classes", ["a"] * 10)), SCHEMA, "classes"),
    "schema-classes-one": (("image",), _edit_json(SCHEMA, _set("classes", ["a"])), SCHEMA, "classes"),
    "schema-classes-too-few": (("image",), _edit_json(SCHEMA, _set("classes", [str(i) for i in range(9)])), WEIGHTS,
                               "shape"),
    "schema-classes-too-many": (("tabular",), _edit_json(SCHEMA, _set("classes", ["a", "b", "c"])), WEIGHTS,
                                "shape"),
    "schema-features-wrong-width": (("tabular",), _edit_json(SCHEMA, lambda d: d["features"].pop()), SCHEMA,
                                    "features"),
    "schema-std-wrong-width": (("tabular",), _edit_json(SCHEMA, lambda d: d["std"].pop()), SCHEMA, "std"),
    "schema-categories-unknown-column": (("tabular",), _edit_json(SCHEMA, _set("categories", {"nope": ["a"]})),
                                         SCHEMA, "categories"),
    "schema-text-missing": (("text",), _edit_json(SCHEMA, _set("text", {})), SCHEMA, "text.tokenizer"),
    "schema-vocab-size-abc": (("text",), _edit_json(SCHEMA, lambda d: d["text"].__setitem__("vocab_size", "abc")),
                              SCHEMA, "vocab_size"),
    "schema-pad-id-out-of-range": (("text",), _edit_json(SCHEMA, lambda d: d["text"].__setitem__("pad_id", 10**6)),
                                   SCHEMA, "pad_id"),
    "schema-max-len-zero": (("text",), _edit_json(SCHEMA, lambda d: d["text"].__setitem__("max_len", 0)), SCHEMA,
                            "max_len"),
    "weights-truncated": (("image",), _bytes(WEIGHTS, lambda b: b[: len(b) // 2]), WEIGHTS, "damaged"),
    "weights-empty": (("image",), _bytes(WEIGHTS, b""), WEIGHTS, "damaged"),
    "weights-huge-header": (("image",), _bytes(WEIGHTS, _huge_header), WEIGHTS, "damaged"),
    "weights-header-not-json": (("image",), _bytes(WEIGHTS, _header_not_json), WEIGHTS, "damaged"),
    "weights-random-bytes": (("image",), _bytes(WEIGHTS, np.random.default_rng(0).bytes(5000)), WEIGHTS, "damaged"),
    "weights-wrong-shape": (("image", "text"), _tensors(_first_weight(lambda t: t[:-1])), WEIGHTS, "shape"),
    "weights-int8": (("image", "tabular"), _tensors(_first_weight(lambda t: (t * 100).to(torch.int8))), WEIGHTS,
                     "I8"),
    "weights-float16": (("image",), _tensors(_first_weight(lambda t: t.half())), WEIGHTS, "F16"),
    "weights-nan": (("image", "text"), _tensors(_first_weight(_nan)), WEIGHTS, "NaN"),
    "weights-inf": (("tabular",), _tensors(_first_weight(_inf)), WEIGHTS, "infinite"),
    "weights-missing-tensor": (("image",), _tensors(lambda t: dict(list(t.items())[1:])), WEIGHTS, "missing"),
    "weights-extra-tensor": (("image",), _tensors(lambda t: {**t, "extra.weight": torch.zeros(2)}), WEIGHTS,
                             "unexpected"),
    "vocab-not-json": (("text",), _bytes("vocab.json", b"{\"tokens\": [\"<pad>\""), "vocab.json", "not valid JSON"),
    "vocab-a-list": (("text",), _bytes("vocab.json", b"[\"<pad>\", \"<unk>\"]"), "vocab.json", "vocabulary"),
    "vocab-wrong-size": (("text",), _edit_json("vocab.json", lambda d: d["tokens"].pop()), "vocab.json", "tokens"),
    "vocab-duplicates": (("text",), _edit_json("vocab.json", lambda d: d["tokens"].append(d["tokens"][-1])),
                         "vocab.json", "duplicate"),
    "vocab-unhashable-token": (("text",), _edit_json("vocab.json", lambda d: d["tokens"].__setitem__(2, [1])),
                               "vocab.json", "damaged"),
}
# verbs that never read the damaged part: evaluate rebuilds the vocabulary and the model's input shape from
# the data (and compares the classes with the run's)
UNREAD = {"vocab": ("evaluate",), "schema-input-shape-other-channels": ("evaluate",)}
PARAMS = [pytest.param(kind, case, id=f"{case}-{kind}") for case, (kinds, *_) in CASES.items() for kind in kinds]
VERBS = ("predict", "evaluate", "export", "serve")


class ServerStarted(Exception):
    """Raised instead of serving: the run loaded, so the damage went unnoticed."""


def _input_for(run: Path, kind: str) -> str:
    if kind == "image":
        from PIL import Image

        path = run.parent / "digit.png"
        Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8) * 4).save(path)
        return str(path)
    if kind == "tabular":
        return ",".join(["1.0"] * 30)
    return "good room"


def _verb(verb: str, run: Path, kind: str) -> list[str]:
    if verb == "predict":
        return ["predict", str(run), _input_for(run, kind)]
    if verb == "serve":
        return ["serve", str(run), "--port", "0"]
    return [verb, str(run)]


@pytest.mark.parametrize(("kind", "case"), PARAMS)
def test_damaged_run_file_is_a_user_error(pristine, kind, case, tmp_path, capsys, monkeypatch):
    import uvicorn

    def no_serving(*args, **kwargs):
        raise ServerStarted

    monkeypatch.setattr(uvicorn, "run", no_serving)
    _, damage, named, what = CASES[case]
    unread = UNREAD.get(case.split("-")[0], ()) + UNREAD.get(case, ())
    run = tmp_path / pristine[kind].name
    shutil.copytree(pristine[kind], run)
    damage(run)
    capsys.readouterr()
    for verb in VERBS:
        try:
            code = main(_verb(verb, run, kind))
        except ServerStarted:
            pytest.fail(f"{verb} served a run with a damaged {named} ({case})")
        err = capsys.readouterr().err
        if verb in unread:
            assert code == 0, f"{verb} does not need the damaged part, yet: {err}"
            continue
        assert code == 2, f"{verb}: {err}"
        assert "internal error" not in err
        if verb == "evaluate" and "the data now has classes" in err:
            continue  # evaluate rebuilds the model from the data, and says the classes differ from the run's
        assert named in err and what in err, f"{verb}: {err}"


def _export_meta_damage(pristine: dict[str, Path], tmp_path: Path, content: bytes) -> Path:
    run = tmp_path / "run"
    shutil.copytree(pristine["image"], run)
    assert main(["export", str(run)]) == 0
    (run / "model.onnx.json").write_bytes(content)
    return run


@pytest.mark.parametrize("content", [b"[1, 2]", b"{\"format\": ", b"\"danlu-onnx/1\"", b"null"],
                         ids=["a-list", "not-json", "a-string", "null"])
def test_damaged_onnx_metadata_is_exported_again(pristine, tmp_path, capsys, content):
    """model.onnx.json is derived: when it is damaged the export counts as stale and is made again."""
    from danlu.export import onnx_is_current

    run = _export_meta_damage(pristine, tmp_path, content)
    assert not onnx_is_current(run)
    capsys.readouterr()
    assert main(["export", str(run), "--json"]) == 0
    assert last_json(capsys.readouterr().out)["parity"]["agreement"] >= 0.999
    assert onnx_is_current(run)


@pytest.mark.parametrize("name", ["status.json", "report.json"])
def test_runs_show_names_a_damaged_summary_file(pristine, tmp_path, capsys, name):
    run = tmp_path / "run"
    shutil.copytree(pristine["image"], run)
    (run / name).write_text("[1, 2]")
    for extra in ([], ["--json"]):
        capsys.readouterr()
        assert main(["runs", "show", str(run), *extra]) == 2
        err = capsys.readouterr().err
        assert name in err and "expected a JSON object" in err
