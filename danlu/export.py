"""``danlu export RUN --format onnx``: the run's model as ONNX, with its preprocessing metadata and a parity check.

The exported graph includes the postprocessing (softmax for classification, the target's units for
regression), so ONNX outputs equal ``Predictor.forward`` and any runtime needs only ``model.onnx.json``
to preprocess. The graph is checked against PyTorch on the run's test split *before* anything is written:
a failed check leaves the run folder as it was.

Exporter: the legacy TorchScript one (``dynamo=False``) while torch ships it. For digits-mlp on this 2-core CPU
it took 0.29 s against 9.9 s for ``dynamo=True`` (same graph, same parity), and export runs on every
``serve --backend onnx`` start with a stale model. It is deprecated since torch 2.9, so the dynamo exporter is
the fallback, chosen when the legacy one is gone or fails, and checked by the same parity test;
``DANLU_ONNX_EXPORTER=dynamo`` (or ``legacy``) forces one.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from danlu.errors import DanluError, DataError
from danlu.runs.files import atomic_write_bytes, read_json, write_json

ONNX_NAME = "model.onnx"
META_NAME = "model.onnx.json"
FORMAT = "danlu-onnx/1"
OPSET = 17
DYNAMO_OPSET = 18  # the dynamo exporter's lowest native opset; ONNX Runtime runs both
EXPORTERS = ("auto", "legacy", "dynamo")
EXPORTER_ENV = "DANLU_ONNX_EXPORTER"  # force one exporter (tests exercise the dynamo fallback with it)
MIN_AGREEMENT = 0.999  # argmax agreement with PyTorch on the test split below this fails the export
REGRESSION_RTOL, REGRESSION_ATOL = 1e-3, 1e-4  # a regression value "agrees" within these (relative to scale)


@dataclass
class Parity:
    """How closely ONNX Runtime reproduces PyTorch on the test split."""

    samples: int
    max_abs_diff: float
    agreement: float  # classification: same argmax; regression: values within tolerance
    measure: str

    def as_json(self) -> dict[str, Any]:
        return {"samples": self.samples, "max_abs_diff": self.max_abs_diff, "agreement": self.agreement,
                "measure": self.measure}


@dataclass
class ExportResult:
    run: Path
    onnx_path: Path
    meta_path: Path
    parity: Parity
    export_s: float
    notes: list[str] = field(default_factory=list)
    exporter: str = "legacy"

    def as_json(self) -> dict[str, Any]:
        return {"run": str(self.run), "onnx": str(self.onnx_path), "metadata": str(self.meta_path),
                "parity": self.parity.as_json(), "export_s": round(self.export_s, 3), "exporter": self.exporter}


def weights_digest(run_dir: Path) -> str:
    """sha256 of model.safetensors: model.onnx.json records it so a stale export is noticed."""
    from danlu.runs.files import check_run_file

    check_run_file(run_dir / "model.safetensors", within=run_dir)  # not a FIFO (hangs) or /dev/zero (endless)
    h = hashlib.sha256()
    with (run_dir / "model.safetensors").open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def onnx_is_current(run_dir: Path) -> bool:
    """True when model.onnx exists and was exported from the run's present weights."""
    onnx_path, meta_path = run_dir / ONNX_NAME, run_dir / META_NAME
    if not (onnx_path.is_file() and meta_path.is_file() and (run_dir / "model.safetensors").is_file()):
        return False
    try:
        meta = read_json(meta_path)
    except (OSError, ValueError, DanluError):  # damaged: stale, so it is exported again
        return False
    if not isinstance(meta, dict):  # a list, a number: damaged as well
        return False
    return meta.get("format") == FORMAT and meta.get("weights_sha256") == weights_digest(run_dir)


def export_onnx(run: str | Path, *, runs_dir: Path | None = None, data_dir: Path | None = None,
                say: Any = print) -> ExportResult:
    """Export, check parity on the test split, then write model.onnx and model.onnx.json atomically."""
    from danlu.predictor import Predictor

    t0 = time.perf_counter()
    predictor = Predictor.load(run, runs_dir)
    run_dir = predictor.run_dir
    batches = _test_batches(predictor, data_dir, say)
    example = batches[0][:2]
    if hasattr(predictor.model, "to_onnx"):  # boosted trees: onnxmltools' converter, postprocessing included
        data, exporter = _tree_graph(predictor), getattr(predictor.model, "onnx_exporter", "onnxmltools")
    else:
        wrapped = _with_postprocessing(predictor)
        data, exporter = _export_graph(wrapped, example, predictor, exporter_choice())
    parity = check_parity(predictor, data, batches)
    say(f"parity on the test split ({parity.samples} samples): max abs difference {parity.max_abs_diff:.3g}, "
        f"{parity.measure} agreement {parity.agreement:.4%}")
    if parity.agreement < MIN_AGREEMENT:
        raise DanluError(f"the ONNX model disagrees with PyTorch on {1 - parity.agreement:.2%} of the test split "
                         f"(needs agreement of at least {MIN_AGREEMENT:.1%}); nothing was written",
                         hint="serve it with the PyTorch backend instead: danlu serve RUN --backend torch")
    onnx_path, meta_path = run_dir / ONNX_NAME, run_dir / META_NAME
    atomic_write_bytes(onnx_path, data)
    write_json(meta_path, metadata(predictor, parity, exporter))  # written last: its digest marks it complete
    return ExportResult(run_dir, onnx_path, meta_path, parity, time.perf_counter() - t0, exporter=exporter)


def exporter_choice() -> str:
    """``DANLU_ONNX_EXPORTER``: auto (the default), legacy or dynamo."""
    choice = os.environ.get(EXPORTER_ENV, "auto").strip().lower() or "auto"
    if choice not in EXPORTERS:
        raise DanluError(f"{EXPORTER_ENV}={choice!r} is not an exporter", hint=f"use one of {', '.join(EXPORTERS)}")
    return choice


def legacy_exporter_available() -> bool:
    """Whether this torch still ships the TorchScript exporter (``torch.onnx.export(..., dynamo=False)``)."""
    import inspect

    import torch

    try:
        return "dynamo" in inspect.signature(torch.onnx.export).parameters and hasattr(torch.onnx, "utils")
    except (TypeError, ValueError):
        return False


def _export_graph(wrapped: Any, example: Any, predictor: Any, choice: str) -> tuple[bytes, str]:
    """(ONNX bytes, the exporter that made them). auto: the legacy exporter while torch ships it (0.3 s), the
    dynamo one (~10 s) when it is gone or fails on this model; either way the caller checks parity."""
    failures = []
    order = {"legacy": ["legacy"], "dynamo": ["dynamo"],
             "auto": ["legacy", "dynamo"] if legacy_exporter_available() else ["dynamo"]}[choice]
    for exporter in order:
        try:
            return (_legacy if exporter == "legacy" else _dynamo)(wrapped, example, predictor.schema), exporter
        except Exception as e:  # the exporters raise many types for unsupported ops or a removed API
            first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
            failures.append(f"{exporter}: {type(e).__name__}: {first}")
    raise DanluError(f"could not export the {predictor.schema.kind} model '{predictor.recipe.model.name}' to ONNX "
                     f"({'; '.join(failures)})",
                     hint="serve it with the PyTorch backend instead: danlu serve RUN --backend torch")


def _tree_graph(predictor: Any) -> bytes:
    try:
        return predictor.model.to_onnx(predictor.schema.input_shape[0])
    except ImportError as e:
        raise DanluError(f"exporting boosted trees needs onnxmltools ({e})",
                         hint="pip install onnxmltools (see requirements.txt)") from None


def _axes(schema: Any) -> dict[str, dict[int, str]]:
    dynamic = {0: "batch", 1: "sequence"} if schema.kind == "text" else {0: "batch"}
    return {"input": dynamic, _output_name(schema): {0: "batch"}}


def _legacy(wrapped: Any, example: Any, schema: Any) -> bytes:
    import torch

    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice is not the user's concern
        torch.onnx.export(wrapped, (example,), buf, dynamo=False, opset_version=OPSET, input_names=["input"],
                          output_names=[_output_name(schema)], dynamic_axes=_axes(schema))
    return buf.getvalue()


def _dynamo(wrapped: Any, example: Any, schema: Any) -> bytes:
    """torch.export + onnxscript. Its progress lines go to stdout, which ``--json`` keeps for one object."""
    import contextlib

    import torch

    with warnings.catch_warnings(), torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(wrapped, (example,), dynamo=True, opset_version=DYNAMO_OPSET,
                                    input_names=["input"], output_names=[_output_name(schema)],
                                    dynamic_axes=_axes(schema), external_data=False, optimize=True, verbose=False)
    return program.model_proto.SerializeToString()


def _with_postprocessing(predictor: Any) -> Any:
    """Model + ``to_predictions`` as one module, so the graph outputs what ``Predictor.forward`` returns."""
    import torch

    from danlu.tasks import to_predictions

    class WithPostprocessing(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = predictor.model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return to_predictions(self.model(x), predictor.schema)

    return WithPostprocessing().eval()


def _output_name(schema: Any) -> str:
    return "probabilities" if schema.task == "classification" else "values"


def test_split_or_parity(predictor: Any, data_dir: Path | None, what: str, verb: str) -> tuple[Any, Any, Any, str]:
    """(test split, training split, None, "") from the run's data, preprocessed as in evaluation; or, when that
    data cannot be read, (None, None, the parity inputs kept in the run folder at training time, why). ``what``
    is checked and ``verb`` names the command, for the messages (export and compress share this)."""
    from danlu.prepare import prepare
    from danlu.runs.folder import RunFolder

    try:
        splits, data_schema, _ = prepare(predictor.recipe, data_dir, for_inference=True)
    except DataError as e:
        sample = RunFolder(predictor.run_dir).load_parity()
        if sample is None:
            raise DataError(f"{what} is checked on the run's test split, and that data cannot be read: "
                            f"{e.message}", hint="put the training data back where the run found it (see its "
                            "recipe.yaml), or point --data-dir / DANLU_DATA at it") from None
        return None, None, sample[0], e.message.splitlines()[0][:120]
    if data_schema.classes != predictor.schema.classes:
        raise DanluError(f"the data now has classes {data_schema.classes}, the run was trained on "
                         f"{predictor.schema.classes}", hint=f"{verb} with the data the run was trained on")
    if len(splits.test) == 0:
        raise DanluError(f"the run's test split is empty, so {what} cannot be checked",
                         hint="train with data.test_fraction > 0")
    return splits.test, splits.train, None, ""


def _test_batches(predictor: Any, data_dir: Path | None, say: Any = print) -> list[Any]:
    """The run's test split as model-ready CPU batches; when that data cannot be read, the parity sample."""
    import torch

    from danlu.inference import make_loader

    test, _, parity, why = test_split_or_parity(predictor, data_dir, "the export", "export")
    if parity is not None:
        say(f"the run's data cannot be read ({why}); checking against the {len(parity)} test samples kept in the "
            "run folder")
        return list(parity.split(64))
    loader = make_loader(test, predictor.schema, predictor.recipe, train=False, generator=None,
                         device=torch.device("cpu"), channels_last=False)
    return [x.contiguous() for x, _ in loader]


def check_parity(predictor: Any, onnx_bytes: bytes, batches: list[Any]) -> Parity:
    """Run every test batch through PyTorch and ONNX Runtime and compare the outputs."""
    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    classification = predictor.schema.task == "classification"
    samples, agree, max_diff = 0, 0, 0.0
    for x in batches:
        ref = predictor.forward(x).numpy()
        got = session.run(None, {name: x.numpy()})[0]
        if got.shape != ref.shape:
            raise DanluError(f"the ONNX model returned shape {list(got.shape)}, PyTorch {list(ref.shape)}",
                             hint="serve it with the PyTorch backend instead: danlu serve RUN --backend torch")
        diff = np.abs(got.astype(np.float64) - ref)
        max_diff = max(max_diff, float(np.nan_to_num(diff, nan=np.inf).max(initial=0.0)))
        if classification:
            agree += int((got.argmax(1) == ref.argmax(1)).sum())
        else:
            scale = np.abs(ref).max(axis=0, keepdims=True) + 1.0
            agree += int(np.all(diff <= REGRESSION_ATOL * scale + REGRESSION_RTOL * np.abs(ref), axis=1).sum())
        samples += len(x)
    return Parity(samples, max_diff, agree / samples, "argmax" if classification else "value")


def _preprocess_steps(schema: Any) -> str:
    """The preprocessing in words, for runtimes outside danlu."""
    if schema.kind == "image":
        c, h, w = schema.input_shape
        return (f"decode, convert to {'grayscale (L)' if c == 1 else 'RGB'}, resize to {h}x{w} (H x W, bilinear), "
                "channels first, x / 255, then (x - mean) / std per channel; float32 [batch, C, H, W]")
    if schema.kind == "tabular" and schema.table:
        return ("encode rows by the column plan in schema.table (danlu/data/columns.py): numbers through the "
                "quantile transform (missing → 0 and a flag), dates split into parts, text tokens hashed, categories "
                "as integer codes (0 missing, 1 rare/unseen); float32 [batch, F] in the order of table.inputs")
    if schema.kind == "tabular":
        return ("features in the order of 'features' (categorical columns one-hot over 'categories'), then "
                "(x - mean) / std per column; a missing value becomes 0 after that; float32 [batch, F]")
    if schema.kind == "audio":
        a = schema.audio
        return (f"decode the file, average the channels to mono, resample to {a['sample_rate']} Hz (soxr HQ), crop "
                f"or zero-pad to {a['samples']} samples ({a['fit']}-aligned); float32 [batch, samples] in [-1, 1]. "
                "The features (log-mel, pitch track) are inside the graph")
    return "tokenize with the run's tokenizer (see 'text'), right-pad with text.pad_id; int64 [batch, sequence]"


def metadata(predictor: Any, parity: Parity, exporter: str = "legacy") -> dict[str, Any]:
    """What a runtime needs beside model.onnx: the input contract, preprocessing steps, labels, provenance."""
    import onnxruntime
    import torch

    schema = predictor.schema
    return {
        "format": FORMAT,
        "run": predictor.run_dir.name,
        "recipe": predictor.recipe.name,
        "model": predictor.recipe.model.name,
        "kind": schema.kind,
        "task": schema.task,
        "input": {"name": "input", "dtype": "int64" if schema.kind == "text" else "float32",
                  "shape": ["batch", "sequence"] if schema.kind == "text" else ["batch", *schema.input_shape]},
        "output": {"name": _output_name(schema),
                   "meaning": "class probabilities (softmax applied)" if schema.task == "classification"
                   else "regression values in the target's own units"},
        "preprocess": _preprocess_steps(schema),
        "schema": asdict(schema),
        "parity": parity.as_json(),
        "weights_sha256": weights_digest(predictor.run_dir),
        "opset": _opset(exporter),
        "exporter": _exporter_name(exporter, torch.__version__),
        "checked_with": f"onnxruntime {onnxruntime.__version__}",
    }


def _opset(exporter: str) -> int:
    if exporter == "onnxmltools":
        from danlu.models.boosting import ONNX_OPSET

        return ONNX_OPSET
    return OPSET if exporter == "legacy" else DYNAMO_OPSET


def _exporter_name(exporter: str, torch_version: str) -> str:
    if exporter == "onnxmltools":
        import onnxmltools

        return f"onnxmltools {onnxmltools.__version__} (LightGBM converter)"
    return f"torch {torch_version} " + ("(TorchScript, dynamo=False)" if exporter == "legacy"
                                        else "(torch.export, dynamo=True)")
