"""danlu compress (int8 quantization, structural pruning), distillation, and the onnx-int8 backend, on digits."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
import torch

import danlu.compress.quantize as quantize
from danlu.cli.dispatch import main
from danlu.training.distill import DistillStep
from tests.conftest import last_json


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A digits MLP (dynamic quantization, pruning, a teacher) and a small digits CNN (static quantization)."""
    from danlu.api import train

    root = tmp_path_factory.mktemp("compress-runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DANLU_CACHE", str(tmp_path_factory.mktemp("cache")))
        mlp = train("digits-mlp", ["train.epochs=4"], runs_dir=root, progress=False).run
        cnn = train("digits-mlp", ["train.epochs=4", "model.name=cnn", "model.channels=[8,16]", "model.padding=same",
                                   "model.hidden=[32]"], runs_dir=root, progress=False).run
    return SimpleNamespace(root=root, mlp=mlp, cnn=cnn)


def fresh(run, tmp_path):
    """A copy of a run without any export, so each test starts from the trained run alone."""
    out = shutil.copytree(run, tmp_path / run.name)
    for name in ("model.onnx", "model.onnx.json", "model.int8.onnx", "model.int8.onnx.json", "compress.json",
                 "compress.md"):
        (out / name).unlink(missing_ok=True)
    return out


def compress(*args, capsys):
    code = main(["compress", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_dynamic_int8_exports_first_writes_the_model_and_one_table(runs, tmp_path, capsys):
    run = fresh(runs.mlp, tmp_path)
    code, out, err = compress(run, "--quantize", "int8", "--json", capsys=capsys)
    assert code == 0, err
    result = last_json(out)
    assert result["mode"] == "dynamic" and "exporting it first" in err
    assert (run / "model.onnx").is_file() and (run / "model.int8.onnx").is_file()
    meta = json.loads((run / "model.int8.onnx.json").read_text())
    assert meta["mode"] == "dynamic" and meta["calibration_samples"] == 0
    assert abs(meta["fp32"] - meta["int8"]) <= 1.0 and meta["agreement"] > 0.97
    ops = {n.op_type for n in onnx.load(str(run / "model.int8.onnx")).graph.node}
    assert ops & {"MatMulInteger", "DynamicQuantizeLinear"}
    table = json.loads((run / "compress.json").read_text())["tables"]["int8"]
    names = [v["name"] for v in table["variants"]]
    assert names == ["fp32 (PyTorch)", "fp32 (ONNX)", "int8 (ONNX)"]
    int8 = table["variants"][2]
    assert int8["file_bytes"] < table["variants"][1]["file_bytes"] / 2.5  # weights in one byte, not four
    assert set(int8["latency_ms"]) == {"1", "64"} and table["machine"]["threads"] == 1
    assert "| int8 (ONNX) |" in (run / "compress.md").read_text()
    assert main(["runs", "show", str(run)]) == 0  # the int8 variant beside the model, with its metrics
    shown = capsys.readouterr().out
    assert "int8: model.int8.onnx (dynamic; accuracy" in shown and "stale" not in shown
    (run / "model.safetensors").write_bytes((runs.cnn / "model.safetensors").read_bytes())  # other weights
    assert main(["runs", "show", str(run), "--json"]) == 0
    assert last_json(capsys.readouterr().out)["int8"]["current"] is False
    assert main(["runs", "show", str(run)]) == 0
    assert "stale: the weights changed since" in capsys.readouterr().out


def test_a_model_the_quantizer_fails_on_is_refused_and_nothing_is_written(runs, tmp_path, capsys, monkeypatch):
    import onnxruntime.quantization

    def fails(*args, **kwargs):
        raise ValueError("Unsupported op: Foo\nmore detail")

    monkeypatch.setattr(onnxruntime.quantization, "quantize_dynamic", fails)
    run = fresh(runs.mlp, tmp_path)
    code, out, err = compress(run, "--quantize", "int8", capsys=capsys)
    assert code == 2 and "ONNX Runtime cannot quantize this model (ValueError: Unsupported op: Foo)" in err
    assert "--backend onnx" in err
    assert not (run / "model.int8.onnx").exists() and not (run / "compress.json").exists()


def test_predict_with_the_int8_backend_agrees_with_torch(runs, tmp_path, capsys):
    from sklearn.datasets import load_digits

    run = fresh(runs.mlp, tmp_path)
    assert compress(run, "--quantize", "int8", capsys=capsys)[0] == 0
    images = (load_digits().images[:40] * 16).astype("uint8")
    paths = []
    for i, img in enumerate(images):
        from PIL import Image

        p = tmp_path / f"d{i}.png"
        Image.fromarray(img).save(p)
        paths.append(str(p))
    tops = {}
    for backend in ("torch", "onnx-int8"):
        assert main(["predict", str(run), *paths, "--backend", backend, "--json"]) == 0
        rows = last_json(capsys.readouterr().out)["predictions"]
        tops[backend] = [r["top"][0]["label"] for r in rows]
    same = np.mean([a == b for a, b in zip(tops["torch"], tops["onnx-int8"], strict=True)])
    assert same >= 0.95


def test_conv_nets_get_static_qdq_calibrated_on_training_samples(runs, tmp_path, capsys):
    run = fresh(runs.cnn, tmp_path)
    code, out, err = compress(run, "--quantize", "int8", "--calibration", "64", "--per-channel", "--json",
                              capsys=capsys)
    assert code == 0, err
    meta = json.loads((run / "model.int8.onnx.json").read_text())
    assert meta["mode"] == "static" and meta["calibration_samples"] == 64 and meta["per_channel"]
    ops = [n.op_type for n in onnx.load(str(run / "model.int8.onnx")).graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    from danlu.serve.engine import Engine

    engine = Engine.load(run, "onnx-int8")
    assert engine.backend == "onnx-int8" and engine.session is not None


def test_an_int8_model_beyond_max_drop_is_refused_and_nothing_is_written(runs, tmp_path, capsys, monkeypatch):
    run = fresh(runs.mlp, tmp_path)
    real = quantize.quantize_bytes

    def damaged(fp32, mode, calibration, per_channel, **options):
        """A real int8 graph whose last weight is scrambled: a quantization gone wrong."""
        proto = onnx.load_from_string(real(fp32, mode, calibration, per_channel, **options))
        init = max(proto.graph.initializer, key=lambda t: np.prod(t.dims))
        arr = onnx.numpy_helper.to_array(init)
        scrambled = np.random.default_rng(0).permutation(arr.reshape(-1)).reshape(arr.shape)
        init.CopyFrom(onnx.numpy_helper.from_array(scrambled, init.name))
        return proto.SerializeToString()

    monkeypatch.setattr(quantize, "quantize_bytes", damaged)
    code, out, err = compress(run, "--quantize", "int8", "--max-drop", "0.5", capsys=capsys)
    assert code == 2 and "more than --max-drop 0.5" in err and "nothing was written" in err
    assert not (run / "model.int8.onnx").exists() and not (run / "model.int8.onnx.json").exists()
    assert not (run / "compress.json").exists()


@pytest.mark.parametrize("args, message", [
    (["--prune", "1.5"], "strictly between 0 and 1"),
    (["--prune", "0"], "strictly between 0 and 1"),
    ([], "needs one of --quantize int8 or --prune"),
    (["--quantize", "int8", "--prune", "0.5"], "needs one of"),
    (["--quantize", "int8", "--max-drop", "-1"], "--max-drop"),
    (["--quantize", "int8", "--calibration", "0"], "--calibration"),
])
def test_bad_options_exit_2(runs, args, message, capsys):
    code, out, err = compress(runs.mlp, *args, capsys=capsys)
    assert code == 2 and message in err


def test_the_int8_backend_without_an_int8_model_says_how_to_make_it(runs, tmp_path, capsys):
    run = fresh(runs.mlp, tmp_path)
    assert main(["predict", str(run), "1", "--backend", "onnx-int8"]) == 2
    assert "danlu compress" in capsys.readouterr().err


def test_pruning_writes_a_new_run_that_rebuilds_from_its_recipe(runs, tmp_path, capsys):
    from danlu.predictor import Predictor

    run = fresh(runs.mlp, tmp_path)
    code, out, err = compress(run, "--prune", "0.5", "--finetune-epochs", "1", "--runs-dir", tmp_path, "--json",
                              capsys=capsys)
    assert code == 0, err
    result = last_json(out)
    new = tmp_path / result["run"].rsplit("/", 1)[-1]
    assert result["before"] == {"hidden": [256, 128]} and result["after"] == {"hidden": [128, 64]}
    pruned = Predictor.load(new)  # rebuilt from recipe.yaml alone, the weights fit it exactly
    assert pruned.recipe.model.options["hidden"] == [128, 64] and pruned.recipe.name == "digits-mlp-pruned50"
    assert sum(p.numel() for p in pruned.model.parameters()) < 0.4 * sum(
        p.numel() for p in Predictor.load(run).model.parameters())
    assert json.loads((new / "status.json").read_text())["status"] == "done"
    assert result["metrics"]["accuracy"] > 0.8
    lineage = json.loads((new / "lineage.json").read_text())
    assert lineage["method"] == "prune" and lineage["source"] == str(run) and lineage["fraction"] == 0.5
    table = json.loads((new / "compress.json").read_text())["tables"]["prune"]
    assert table["variants"][1]["parameters"] < table["variants"][0]["parameters"]
    assert main(["runs", "show", str(new)]) == 0
    assert "lineage: pruned 50 %" in capsys.readouterr().out
    assert main(["export", str(new)]) == 0  # exported like any run
    # pruned, then quantized (as `danlu compress` advises): the pruning's table stays beside the int8 one
    assert compress(new, "--quantize", "int8", capsys=capsys)[0] == 0
    tables = json.loads((new / "compress.json").read_text())["tables"]
    assert list(tables) == ["prune", "int8"] and tables["prune"]["variants"] == table["variants"]
    md = (new / "compress.md").read_text()
    assert "## pruned 50 % + 1 epoch(s) of" in md and "## int8 (dynamic) of" in md


def test_a_one_table_compress_json_from_before_is_kept_under_its_method(tmp_path):
    """compress.json once held one table at its top level; adding a table keeps that one."""
    from danlu.compress.measure import Variant, read_tables, write_table

    row = Variant("original (a)", 10, 40, {1: 0.1, 64: 2.0}, "accuracy", 97.0)
    small = Variant("compressed (b)", 5, 20, {1: 0.05, 64: 1.0}, "accuracy", 96.5, 0.99, "pruned 50 %")
    info = {"run": "b", "method": "pruned 50 %", "machine": {"threads": 1, "cpu": "x", "cores": 2, "torch": "t",
                                                             "onnxruntime": "o"}, "test": "9 test samples"}
    (tmp_path / "compress.json").write_text(json.dumps({**info, "variants": [row.as_json(), small.as_json()]}))
    write_table(tmp_path, "int8", [row, small], {**info, "method": "int8 (dynamic)"})
    tables = read_tables(tmp_path)
    assert list(tables) == ["prune", "int8"] and tables["prune"]["variants"][1]["name"] == "compressed (b)"
    assert "## pruned 50 % of b" in (tmp_path / "compress.md").read_text()
    (tmp_path / "compress.json").write_text("{not json")  # damaged: rewritten, not a crash
    write_table(tmp_path, "int8", [row, small], {**info, "method": "int8 (dynamic)"})
    assert list(read_tables(tmp_path)) == ["int8"]


def test_pruning_a_conv_net_without_fine_tuning_keeps_the_pruned_function(runs, tmp_path, capsys):
    """--finetune-epochs 0: the saved run predicts exactly what the pruned model computed."""
    from danlu.compress.data import load_test_set
    from danlu.compress.prune import prune_model
    from danlu.predictor import Predictor

    run = fresh(runs.cnn, tmp_path)
    code, out, err = compress(run, "--prune", "0.5", "--finetune-epochs", "0", "--runs-dir", tmp_path, "--json",
                              capsys=capsys)
    assert code == 0, err
    result = last_json(out)
    assert result["after"] == {"channels": [4, 8], "hidden": [16]}
    new = Predictor.load(tmp_path / result["run"].rsplit("/", 1)[-1])
    source = Predictor.load(run)
    x = load_test_set(source, None).batches[0]
    expected = source.forward(x)  # before pruning
    pruned = prune_model(source.model, x[:2], 0.5)
    assert torch.allclose(new.forward(x), torch.softmax(pruned(x), 1), atol=1e-5)
    assert not torch.allclose(new.forward(x), expected, atol=1e-3)  # it really is another model


def test_distill_step_mixes_soft_and_hard_losses():
    torch.manual_seed(0)
    student, teacher = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))

    def plain(xb, yb):
        out = student(xb)
        return torch.nn.functional.cross_entropy(out, yb), out

    hard, _ = plain(x, y)
    assert torch.allclose(DistillStep(plain, teacher, 4.0, 0.0)(x, y)[0], hard)
    t = 2.0
    kl = torch.nn.functional.kl_div(torch.log_softmax(student(x) / t, 1), torch.softmax(teacher(x) / t, 1),
                                    reduction="batchmean")
    loss, _ = DistillStep(plain, teacher, t, 1.0)(x, y)
    assert torch.allclose(loss, kl * t * t)
    loss.backward()
    assert student.weight.grad is not None and teacher.weight.grad is None  # no gradient reaches the teacher
    mixed, _ = DistillStep(plain, teacher, t, 0.7)(x, y)
    assert torch.allclose(mixed, 0.7 * kl * t * t + 0.3 * hard)


def test_a_distilled_student_records_its_teacher(runs, tmp_path, cli):
    """On another seed than the teacher's: other normalization statistics (sampled from another split), which
    were refused before; the teacher now reads the batch re-mapped to its own."""
    from danlu.runs.folder import load_schema

    code, out, err = cli("train", "digits-mlp", "seed=1", "train.epochs=2", "model.hidden=[32]",
                         f"train.distill.teacher={runs.mlp}", "train.distill.temperature=3", "--quiet", "--json")
    assert code == 0, err
    student = tmp_path / "runs" / last_json(out)["run"].rsplit("/", 1)[-1]
    assert load_schema(student / "schema.json").mean != load_schema(runs.mlp / "schema.json").mean  # this case
    lineage = json.loads((student / "lineage.json").read_text())
    from danlu.export import weights_digest

    assert lineage["teacher"] == str(runs.mlp) and lineage["teacher_weights_sha256"] == weights_digest(runs.mlp)
    assert lineage["temperature"] == 3.0 and lineage["alpha"] == 0.7
    code, out, err = cli("runs", "show", str(student), "--json")
    assert last_json(out)["lineage"]["method"] == "distill"
    table = json.loads((student / "compress.json").read_text())["tables"]["distill"]  # teacher vs student
    teacher_row, student_row = table["variants"]
    assert teacher_row["name"] == f"teacher ({runs.mlp.name})" and student_row["name"] == f"student ({student.name})"
    assert student_row["parameters"] < teacher_row["parameters"] and 0 < student_row["agreement"] <= 1
    assert student_row["metric"] == pytest.approx(100 * last_json(out)["metrics"]["accuracy"])
    assert "| teacher (" in (student / "compress.md").read_text()


def test_the_teacher_reads_the_batch_in_its_own_normalization():
    from danlu.training.distill import Renormalize

    raw = torch.rand(4, 3, 5, 5)
    ms, ss, mt, st = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3], [0.45, 0.42, 0.31], [0.21, 0.2, 0.33]

    def norm(m, s):
        return (raw - torch.tensor(m).view(1, 3, 1, 1)) / torch.tensor(s).view(1, 3, 1, 1)

    assert torch.allclose(Renormalize((ms, ss), (mt, st), image=True)(norm(ms, ss)), norm(mt, st), atol=1e-6)
    seen = []
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(75, 3))
    teacher.register_forward_pre_hook(lambda m, args: seen.append(args[0]))

    def plain(xb, yb):
        out = torch.zeros(len(xb), 3, requires_grad=True)
        return out.sum(), out

    DistillStep(plain, teacher, 2.0, 0.5, Renormalize((ms, ss), (mt, st), image=True))(norm(ms, ss), None)
    assert torch.allclose(seen[0], norm(mt, st), atol=1e-6)


def test_a_teacher_that_reads_other_input_is_refused_before_any_file(runs, tmp_path, cli):
    teacher = runs.root / "teacher-other-classes"
    from danlu.api import train

    train("breast-cancer-mlp", ["train.epochs=1"], run_dir=teacher, progress=False)
    code, out, err = cli("train", "digits-mlp", "train.epochs=1", f"train.distill.teacher={teacher}")
    assert code == 2 and "train.distill.teacher" in err and "classes" in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    code, out, err = cli("train", "digits-mlp", "train.epochs=1", "train.distill.teacher=no-such-run")
    assert code == 2 and "no run folder" in err
    bigger = runs.root / "teacher-16px"  # the same classes, another input shape
    train("digits-mlp", ["train.epochs=1", "data.image_size=16", "model.hidden=[16]"], run_dir=bigger,
          progress=False)
    code, out, err = cli("train", "digits-mlp", "train.epochs=1", f"train.distill.teacher={bigger}")
    assert code == 2 and "input shape [1, 16, 16]" in err and "[1, 8, 8]" in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_recipes_without_distill_read_as_before():
    from danlu.recipe import load_recipe

    assert "distill" not in load_recipe("digits-mlp").to_yaml()
    distilled = load_recipe("mnist-mlp-distilled")
    assert distilled.train.distill.teacher == "mnist-cnn" and distilled.train.distill.temperature == 1


def test_preprocessing_leaves_nothing_in_the_current_folder(tmp_path, monkeypatch):
    """ONNX Runtime's symbolic shape inference dumps its model into the current folder when it gives up
    (it did so with a 90 MB file for MiniLM): the pre-processing step runs from its own temporary folder."""
    import onnxruntime.quantization.shape_inference as shape_inference

    def dump_and_fail(src, dst, **_):
        open("sym_shape_infer_temp.onnx", "wb").write(b"x")  # what ORT does, relative to the cwd
        raise Exception("Incomplete symbolic shape inference")

    user, work = tmp_path / "user", tmp_path / "work"
    user.mkdir(), work.mkdir()
    (user / "model.onnx").write_bytes(b"")
    monkeypatch.setattr(shape_inference, "quant_pre_process", dump_and_fail)
    monkeypatch.chdir(user)
    src = quantize._preprocessed(__import__("pathlib").Path("model.onnx"), work / "pre.onnx")
    assert src.name == "model.onnx" and sorted(p.name for p in user.iterdir()) == ["model.onnx"]
    assert (work / "sym_shape_infer_temp.onnx").exists()
