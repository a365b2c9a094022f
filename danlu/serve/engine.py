"""The served model: the run's Predictor for preprocessing and postprocessing, PyTorch or ONNX Runtime in between.

Both backends read only the run folder's safetensors/ONNX and JSON files, never a pickle.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from danlu.errors import DanluError, RunError
from danlu.outputs import finite_rows
from danlu.predictor import Predictor
from danlu.serve.decoding import MIB, CheckedImages, check_images, give_back_memory
from danlu.serve.inputs import MAX_IMAGE_PIXELS
from danlu.serve.limits import DecodeLimits

BACKENDS = ("torch", "onnx", "onnx-int8")  # onnx-int8: model.int8.onnx from `danlu compress --quantize`


class Engine:
    """prepare (per request) → run_batch (merged requests) → format (per request)."""

    def __init__(self, predictor: Predictor, backend: str = "torch", session: Any = None):
        self.predictor, self.backend, self.session = predictor, backend, session
        self.schema = predictor.schema
        self.decode_limits = DecodeLimits()
        self.pad_id = int(self.schema.text.get("pad_id", 0)) if self.schema.kind == "text" else 0
        # convolutions run ~2x faster channels-last on CPU (mnist-cnn: 0.58 vs 1.5 ms at batch 1), as in training
        self.channels_last = session is None and self.kind == "image" and any(
            isinstance(m, torch.nn.Conv2d) for m in predictor.model.modules())
        if self.channels_last:
            predictor.model.to(memory_format=torch.channels_last)

    @classmethod
    def load(cls, run: str | Path, backend: str = "torch", runs_dir: Path | None = None,
             data_dir: Path | None = None) -> Engine:
        if backend not in BACKENDS:
            raise DanluError(f"unknown backend '{backend}'", hint="use --backend torch, onnx or onnx-int8")
        predictor = Predictor.load(run, runs_dir)
        if backend == "torch":
            return cls(predictor, backend)
        return cls(predictor, backend, onnx_session(predictor.run_dir, predictor.schema, data_dir, backend))

    @property
    def kind(self) -> str:
        return self.schema.kind

    def check(self, inputs: list[Any], names: list[Any] | None = None) -> CheckedImages | None:
        """Images: their headers read and costed (``CheckedImages.cost``, the bytes their decode will hold),
        a RequestError naming any over the limits; None for texts and rows."""
        if self.kind != "image":
            return None
        limits, (_, h, w) = self.decode_limits, self.schema.input_shape
        return check_images(inputs, names, (h, w), int(limits.max_image_mb * MIB),
                            int(limits.max_request_image_mb * MIB), MAX_IMAGE_PIXELS)

    def prepare(self, inputs: list[Any], names: list[Any] | None = None,
                checked: CheckedImages | None = None) -> torch.Tensor:
        """Validated inputs → model input (images: uint8 pixels, normalized per batch in ``run_batch``);
        raises DataError naming the bad input (and its file name, for uploads). ``checked``: what
        ``check`` gave for these inputs, when the caller already asked."""
        if self.kind == "image":
            checked = checked or self.check(inputs, names)
            try:
                return self.predictor.image_pixels(checked.items, max_pixels=MAX_IMAGE_PIXELS, names=names)
            finally:
                checked.close()
                give_back_memory(checked.cost)
        if self.kind == "audio":  # an upload's header may claim at most a minute (decode_audio refuses more)
            return self.predictor.audio_tensor(inputs, max_seconds=SERVE_MAX_AUDIO_SECONDS)
        return self.predictor.to_tensor(inputs)  # non-finite table values are refused there

    def plain_audio(self, inputs: list[Any]) -> bool:
        """Whether every input is a plain 16-bit PCM WAV at the run's sample rate: its decode is a copy
        and a scale (no libsndfile, no resampling), cheap enough for the event loop."""
        from danlu.data.audio import pcm16_wav

        rate = int(self.schema.audio["sample_rate"])
        for item in inputs:
            got = pcm16_wav(item) if isinstance(item, bytes | bytearray) else None
            if got is None or got[0] != rate:
                return False
        return True

    def collate(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """One batch from several requests; token ids of different lengths are right-padded with pad_id."""
        if len(parts) == 1:
            return parts[0]
        if self.kind == "text":
            longest = max(p.shape[1] for p in parts)
            parts = [torch.nn.functional.pad(p, (0, longest - p.shape[1]), value=self.pad_id) for p in parts]
        return torch.cat(parts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Probabilities or regression values, as ``Predictor.forward`` returns them."""
        if self.session is None:
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                return self.predictor.forward(x)
        name = self.session.get_inputs()[0].name
        return torch.from_numpy(self.session.run(None, {name: x.numpy()})[0])

    def run_batch(self, parts: list[torch.Tensor]) -> list[torch.Tensor]:
        """Called in the model thread with every request of one batch.

        Images are normalized here, once per batch rather than once per request on the event loop
        (mnist-cnn at 32 clients: ~11 µs of event-loop time per request saved, ~13 requests per batch).
        """
        x = self.collate(parts)
        if self.kind == "image":
            x = self.predictor.normalize(x)
        out = self.forward(x)
        return list(out.split([len(p) for p in parts]))

    def format(self, outputs: torch.Tensor, labels: list[Any], top_k: int) -> list[dict[str, Any]]:
        """Response rows; a non-finite output (a regression overflowing float32) is a DataError naming its input."""
        rows = self.predictor.format(outputs, labels, top_k)
        return finite_rows(rows, [f"input {i}" for i in range(len(rows))])


SERVE_MAX_AUDIO_SECONDS = 60.0


def onnx_session(run_dir: Path, schema: Any, data_dir: Path | None, backend: str = "onnx") -> Any:
    """ONNX Runtime on the run's model.onnx; exported first when missing or older than the weights. The int8
    model is never made here: quantizing needs its accuracy check (danlu compress)."""
    import onnxruntime as ort

    from danlu.export import ONNX_NAME, export_onnx, onnx_is_current

    name = ONNX_NAME
    if backend == "onnx-int8":
        from danlu.compress.quantize import INT8_NAME, int8_is_current

        name = INT8_NAME
        if not int8_is_current(run_dir):
            raise RunError(f"{run_dir.name} has no int8 model quantized from its present weights",
                           hint=f"make it first: danlu compress {run_dir} --quantize int8")
    elif not onnx_is_current(run_dir):
        export_onnx(run_dir, data_dir=data_dir, say=lambda msg: None)
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    options.inter_op_num_threads = 1
    again = (f"quantize it again: danlu compress {run_dir} --quantize int8" if backend == "onnx-int8"
             else f"export it again: danlu export {run_dir}")
    from danlu.runs.files import check_run_file

    check_run_file(run_dir / name, within=run_dir)  # a regular file in the run folder (a FIFO would hang here)
    try:
        session = ort.InferenceSession(os.fspath(run_dir / name), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own types for damaged or foreign files
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise RunError(f"{run_dir / name} cannot be loaded ({first})", hint=again) from None
    got = session.get_inputs()[0].shape[1:]
    want = list(schema.input_shape or [])
    if schema.kind != "text" and [d if isinstance(d, int) else None for d in got] != want:
        raise RunError(f"{run_dir / name} takes inputs of shape {got}, this run's model {want}: "
                       "it is not this run's export", hint=again)
    return session
