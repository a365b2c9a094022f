"""``danlu compress RUN --quantize int8``: the exported ONNX graph quantized with ONNX Runtime's tools.

ONNX Runtime's quantizer, not ``torch.ao.quantization``: the server runs the ONNX graph, the tool quantizes
embeddings and LSTMs too, and torch's eager quantization is deprecated (its successor needs torch.compile).
Conv nets get static QDQ quantization calibrated on training samples (activations int8 too, so the
convolutions run as integer kernels); Linear, LSTM and transformer models get dynamic quantization (weights
int8, activation ranges measured per call), which needs no calibration and suits variable-length text.

Nothing is written unless the int8 model stays within ``max_drop`` points of the fp32 model's test metric.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from danlu.errors import DanluError, DataError

INT8_NAME = "model.int8.onnx"
INT8_META = "model.int8.onnx.json"
INT8_FORMAT = "danlu-onnx-int8/1"
MODES = ("static", "dynamic")


@dataclass
class QuantizeResult:
    run: Path
    path: Path
    meta_path: Path
    mode: str
    fp32_metric: float | None
    int8_metric: float | None
    metric_name: str
    agreement: float
    table: str
    variants: list[Any] = field(default_factory=list)
    seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {"run": str(self.run), "int8": str(self.path), "metadata": str(self.meta_path), "mode": self.mode,
                "metric": self.metric_name, "fp32": self.fp32_metric, "int8_metric": self.int8_metric,
                "agreement": self.agreement, "variants": [v.as_json() for v in self.variants],
                "seconds": round(self.seconds, 2)}


def choose_mode(model: Any, schema: Any) -> str:
    """static for conv nets on images (integer convolutions need quantized activations), else dynamic. Audio
    models get dynamic: static QDQ of mandarin-tones' tone_net (feature front end in float either way) measured
    64.3 % test accuracy against 95.8 % fp32, dynamic 95.6 % (docs/audio.md)."""
    from danlu.inference import has_conv

    return "static" if schema.kind == "image" and has_conv(model) else "dynamic"


def check_options(calibration: int, max_drop: float, threads: int) -> None:
    if calibration < 1:
        raise DanluError(f"--calibration must be at least 1 sample, got {calibration}", hint="e.g. --calibration 256")
    if not 0 <= max_drop <= 100:
        raise DanluError(f"--max-drop is in points of the test metric (0-100), got {max_drop:g}",
                         hint="e.g. --max-drop 1 allows the int8 model one point less accuracy")
    if threads < 1:
        raise DanluError(f"--threads must be at least 1, got {threads}")


def quantize_run(run: str | Path, *, calibration: int = 256, per_channel: bool = False, max_drop: float = 1.0,
                 threads: int = 1, runs_dir: Path | None = None, data_dir: Path | None = None,
                 say: Any = print) -> QuantizeResult:
    """Quantize, score fp32 and int8 on the test split, refuse beyond ``max_drop``, then write
    model.int8.onnx, its metadata and the before/after table."""
    from danlu.compress.data import calibration_batches, load_test_set
    from danlu.compress.measure import machine, write_table
    from danlu.export import ONNX_NAME, export_onnx, onnx_is_current, weights_digest
    from danlu.predictor import Predictor
    from danlu.runs.files import atomic_write_bytes, write_json

    check_options(calibration, max_drop, threads)
    t0 = time.perf_counter()
    predictor = Predictor.load(run, runs_dir)
    run_dir, schema = predictor.run_dir, predictor.schema
    if not onnx_is_current(run_dir):
        say(f"{run_dir.name} has no current model.onnx: exporting it first")
        export_onnx(run_dir, data_dir=data_dir, say=say)
    from danlu.runs.files import check_run_file

    check_run_file(run_dir / ONNX_NAME, within=run_dir)
    fp32_bytes = (run_dir / ONNX_NAME).read_bytes()
    mode = choose_mode(predictor.model, schema)
    test = load_test_set(predictor, data_dir, say)
    calib = None
    if mode == "static":
        if test.train is None:
            raise DataError("static quantization of a conv net calibrates on training samples, and the run's data "
                            "cannot be read", hint="put the training data back where the run found it, or point "
                            "--data-dir / DANLU_DATA at it")
        calib = calibration_batches(predictor, test.train, calibration)
    say(f"quantizing {run_dir.name} to int8 with ONNX Runtime ({mode}"
        + (f", calibrated on {sum(len(b) for b in calib)} training samples" if calib else "")
        + (", per channel" if per_channel else "") + ")")
    keep = audio_front_end(predictor.model, fp32_bytes) if schema.kind == "audio" else None
    int8_bytes = quantize_bytes(fp32_bytes, mode, calib, per_channel, keep_float=keep)
    variants, fp32_out, int8_out = _compare(predictor, fp32_bytes, int8_bytes, test, threads, mode)
    from danlu.compress.measure import agreement

    agree = agreement(int8_out, fp32_out, schema)
    fp32_v, int8_v = variants[1], variants[2]
    int8_v.agreement = agree
    if test.labels is not None:
        drop = fp32_v.metric - int8_v.metric
        said = f"{fp32_v.metric_name} {fp32_v.metric:.2f} (fp32) → {int8_v.metric:.2f} (int8)"
    else:
        drop = 100 * (1 - agree)
        said = f"agreement with fp32 {100 * agree:.2f} %"
    say(f"{said}; agreement {100 * agree:.2f} %; {len(fp32_bytes) / 1e6:.2f} → {len(int8_bytes) / 1e6:.2f} MB")
    if drop > max_drop:
        raise DanluError(f"int8 loses {drop:.2f} points ({said}), more than --max-drop {max_drop:g}; nothing was "
                         "written", hint="allow more with --max-drop, try --per-channel or more --calibration "
                         "samples, or serve the fp32 model: --backend onnx")
    path, meta_path = run_dir / INT8_NAME, run_dir / INT8_META
    info = {"run": run_dir.name, "method": f"int8 ({mode})", "machine": machine(threads),
            "test": test.note or f"{len(test.labels)} test samples"}
    atomic_write_bytes(path, int8_bytes)
    table = write_table(run_dir, "int8", variants, info)
    write_json(meta_path, {  # last: its digests mark the int8 model complete and current
        "format": INT8_FORMAT, "mode": mode, "per_channel": per_channel,
        "calibration_samples": sum(len(b) for b in calib) if calib else 0,
        "weights_sha256": weights_digest(run_dir), "fp32_onnx_sha256": hashlib.sha256(fp32_bytes).hexdigest(),
        "int8_onnx_sha256": hashlib.sha256(int8_bytes).hexdigest(), "metric": fp32_v.metric_name,
        "fp32": fp32_v.metric, "int8": int8_v.metric, "agreement": agree, "max_drop": max_drop,
        "quantized_with": info["machine"]["onnxruntime"]})
    return QuantizeResult(run_dir, path, meta_path, mode, fp32_v.metric, int8_v.metric, fp32_v.metric_name, agree,
                          table, variants, time.perf_counter() - t0)


def audio_front_end(model: Any, fp32: bytes) -> list[str]:
    """The graph's feature front end (danlu.compress.front_end), which stays float; refused when none is found
    (int8 would round the spectrogram itself)."""
    import onnx

    from danlu.compress.front_end import front_end_nodes, model_names

    graph = onnx.load_from_string(fp32).graph
    front = front_end_nodes(graph, *model_names(model))
    if not front:
        raise DanluError("cannot find the audio model's feature front end in its ONNX graph, and int8 would round "
                         "the spectrogram itself; nothing was written",
                         hint="serve the fp32 graph instead: danlu serve RUN --backend onnx")
    return front


def quantize_bytes(fp32: bytes, mode: str, calibration: list[Any] | None, per_channel: bool,
                   keep_float: list[str] | None = None) -> bytes:
    """The int8 graph; ONNX Runtime's own errors become one DanluError saying the model cannot be quantized.
    ``keep_float``: names of nodes of ``fp32`` that stay float (an audio model's feature front end)."""
    import logging

    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    front = list(keep_float or [])
    with tempfile.TemporaryDirectory(prefix="danlu-int8-") as tmp:
        plain, out = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        plain.write_bytes(fp32)
        src = _preprocessed(plain, Path(tmp) / "pre.onnx")
        if front and src != plain and not _keeps_names(src, plain, front):
            src = plain  # the optimizer fused or renamed a front-end product: quantize the graph as exported
        logging.getLogger().setLevel(max(logging.getLogger().level, logging.WARNING))  # its INFO chatter
        try:
            if mode == "static":
                quantize_static(src, out, _Reader(calibration or []), quant_format=QuantFormat.QDQ,
                                per_channel=per_channel, activation_type=QuantType.QUInt8,
                                weight_type=QuantType.QInt8, nodes_to_exclude=float_nodes(src) + front)
            else:
                quantize_dynamic(src, out, per_channel=per_channel, weight_type=QuantType.QInt8,
                                 nodes_to_exclude=front)
        except Exception as e:  # the quantizer raises many types for ops it does not know
            first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
            raise DanluError(f"ONNX Runtime cannot quantize this model ({type(e).__name__}: {first})",
                             hint="serve the fp32 graph instead: danlu serve RUN --backend onnx") from None
        data = out.read_bytes()
    if not _has_integer_ops(data):
        raise DanluError("ONNX Runtime found nothing to quantize in this model (no MatMul, Gemm, Conv, LSTM or "
                         "Gather it quantizes)", hint="serve the fp32 graph instead: danlu serve RUN --backend onnx")
    return data


def _keeps_names(pre: Path, plain: Path, names: list[str]) -> bool:
    """Whether every quantizable node among ``names`` is still in the pre-processed graph, by name."""
    import onnx

    from danlu.compress.front_end import quantizable

    kept = {n.name for n in onnx.load(str(pre)).graph.node}
    return all(n in kept for n in quantizable(onnx.load(str(plain)).graph, names))


def _preprocessed(src: Path, dst: Path) -> Path:
    """Shape inference and graph optimization before quantization, as ONNX Runtime advises; the plain graph
    when that step fails on a model (it is an optimization of the result, not a requirement)."""
    import contextlib

    try:
        from onnxruntime.quantization.shape_inference import quant_pre_process

        # when its symbolic shape inference is incomplete (MiniLM's graph), ONNX Runtime saves the model as
        # sym_shape_infer_temp.onnx + a ~90 MB external-data file into the current folder before it raises:
        # run it from dst's (temporary) folder so the user's folder is not littered
        src, dst = src.resolve(), dst.resolve()
        with contextlib.chdir(dst.parent):
            quant_pre_process(str(src), str(dst), skip_symbolic_shape=False)
        return dst
    except Exception:  # the pre-processor fails on some exporters' graphs; quantizing the plain one still works
        return src


def float_nodes(path: Path) -> list[str]:
    """Nodes static quantization leaves in float: the postprocessing after the last layer with weights (softmax,
    or the regression's rescaling: probabilities are not rounded to 1/256 steps), and a first convolution that
    reads the image itself (1-3 channels: its int8 GEMM has a tiny inner dimension and gained nothing but the
    cost of quantizing the raw input; mnist-cnn's batch 1 and 64 ran faster with it in float)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    nodes = list(graph.node)  # in topological order
    shapes = {t.name: numpy_helper.to_array(t).shape for t in graph.initializer}
    last = max((i for i, n in enumerate(nodes) if n.op_type in ("Gemm", "MatMul", "Conv")), default=len(nodes))
    keep = [n.name for n in nodes[last + 1:] if n.name]
    convs = [n for n in nodes if n.op_type == "Conv"]
    if convs and len(convs[0].input) > 1 and len(shapes.get(convs[0].input[1], ())) == 4 \
            and shapes[convs[0].input[1]][1] <= 3 and convs[0].name:
        keep.append(convs[0].name)
    return keep


def _has_integer_ops(data: bytes) -> bool:
    import onnx

    ops = {n.op_type for n in onnx.load_from_string(data).graph.node}
    return bool(ops & {"QuantizeLinear", "DynamicQuantizeLinear", "MatMulInteger", "ConvInteger", "QLinearConv",
                       "QLinearMatMul", "DynamicQuantizeLSTM", "QAttention"})


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over our calibration batches."""

    def __init__(self, batches: list[Any]):
        self.batches, self.i = batches, 0

    def get_next(self) -> dict[str, Any] | None:
        if self.i >= len(self.batches):
            return None
        self.i += 1
        return {"input": self.batches[self.i - 1].numpy()}

    def rewind(self) -> None:
        self.i = 0


def _compare(predictor: Any, fp32: bytes, int8: bytes, test: Any, threads: int, mode: str) -> tuple:
    """Rows for PyTorch fp32, ONNX fp32 and ONNX int8 (test metric and timing), and the two ONNX outputs."""
    import numpy as np

    from danlu.compress.measure import (
        Variant,
        ort_forward,
        ort_session,
        score_outputs,
        time_variant,
        timing_inputs,
        torch_forward,
    )
    from danlu.models import count_parameters

    schema = predictor.schema
    inputs = timing_inputs(test.batches, int(schema.text.get("pad_id", 0)) if schema.kind == "text" else 0)
    rows, outs = [], []
    torch_fn = torch_forward(predictor.model, schema)
    params = count_parameters(predictor.model)[0]  # the same weights in every row, int8 stores them in a byte
    runners = [("fp32 (PyTorch)", torch_fn, params, (predictor.run_dir / "model.safetensors").stat().st_size, ""),
               ("fp32 (ONNX)", ort_forward(ort_session(fp32, threads)), params, len(fp32), ""),
               ("int8 (ONNX)", ort_forward(ort_session(int8, threads)), params, len(int8),
                f"ONNX Runtime {mode} quantization")]
    for name, fn, params, size, note in runners:
        out = np.concatenate([fn(x) for x in test.batches])
        outs.append(out)
        metric_name, metric = ("agreement", None) if test.labels is None else score_outputs(out, test.labels, schema)
        rows.append(Variant(name, params, size, time_variant(fn, inputs, threads), metric_name, metric,
                            None, note))
    return rows, outs[1], outs[2]


def int8_is_current(run_dir: Path) -> bool:
    """model.int8.onnx exists and was quantized from the run's present weights."""
    from danlu.export import weights_digest
    from danlu.runs.files import read_json

    path, meta = run_dir / INT8_NAME, run_dir / INT8_META
    if not (path.is_file() and meta.is_file()):
        return False
    try:
        data = read_json(meta)
    except (OSError, ValueError, DanluError):
        return False
    return isinstance(data, dict) and data.get("format") == INT8_FORMAT and \
        data.get("weights_sha256") == weights_digest(run_dir)
