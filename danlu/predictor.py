"""Load a run folder and predict: preprocessing from schema.json, the model, postprocessing to labels.

Needs only the run folder (recipe.yaml, schema.json, model.safetensors, and vocab.json or tokenizer/
for text) — no pickles, no user code. ``danlu predict``, ``danlu serve`` and ``danlu export`` use it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from danlu.errors import DanluError, DataError
from danlu.schema import Schema


class Predictor:
    def __init__(self, run_dir: Path, recipe: Any, schema: Schema, model: torch.nn.Module):
        self.run_dir, self.recipe, self.schema, self.model = run_dir, recipe, schema, model.eval()
        self._text_encoder: Any = None
        self._tabular: Any = None
        self._normalizer: Any = None

    @classmethod
    def load(cls, run: str | Path, runs_dir: Path | None = None) -> Predictor:
        from danlu.api import inference_options, load_run
        from danlu.checkpoint import load_model_weights
        from danlu.models import build

        run_dir, recipe, schema = load_run(run, runs_dir)
        model = build(recipe.model.name, inference_options(recipe), schema)
        load_model_weights(run_dir / "model.safetensors", model)
        predictor = cls(run_dir, recipe, schema, model)
        if schema.kind == "text":
            from danlu.data.text import TextEncoder

            predictor._text_encoder = TextEncoder.from_run(run_dir, schema)
        return predictor

    # ---------------------------------------------------------------- preprocessing

    def image_pixels(self, items: list[Any], max_pixels: int | None = None,
                     names: list[Any] | None = None) -> torch.Tensor:
        """Paths, raw bytes or uint8 arrays → uint8 [N, C, H, W] at the model's size (not yet normalized).
        Errors name a path, or "input i" plus ``names[i]`` (an uploaded file's name) when that says more."""
        from PIL import UnidentifiedImageError

        from danlu.data.imagefolder import decode_image

        c, h, w = self.schema.input_shape
        arrays = []
        for i, item in enumerate(items):
            where = item if isinstance(item, str | Path) else f"input {i}"
            if names is not None and str(names[i]) != where:
                where = f"{where} ({names[i]})"
            try:
                arr = decode_image(item, (h, w), c, max_pixels=max_pixels)
            except DataError as e:
                raise DataError(f"{where}: {e.message}", hint=e.hint) from None
            except Exception as e:  # PIL raises many types for bad bytes
                reason = "" if isinstance(e, UnidentifiedImageError) else f" ({type(e).__name__}: {e})"
                raise DataError(f"{where}: not a readable image{reason}",
                                hint="send a JPEG, PNG, GIF, BMP or WebP image") from None
            arrays.append(torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))))
        return arrays[0].unsqueeze(0) if len(arrays) == 1 else torch.stack(arrays)

    def readable_images(self, items: list[Any]) -> tuple[list[Any], torch.Tensor, list[str]]:
        """(the items that decode, their uint8 pixels, why each other one could not be read)."""
        kept, arrays, problems = [], [], []
        for item in items:
            try:
                arrays.append(self.image_pixels([item]))
                kept.append(item)
            except DataError as e:
                problems.append(e.message)
        pixels = torch.cat(arrays) if arrays else torch.empty(0, *self.schema.input_shape, dtype=torch.uint8)
        return kept, pixels, problems

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 [N, C, H, W] → the normalized float batch the model was trained on."""
        if self._normalizer is None:
            from danlu.data.tensors import Normalizer

            self._normalizer = Normalizer(self.schema.mean, self.schema.std, self.schema.input_shape[0])
        return self._normalizer(pixels)

    def image_tensor(self, items: list[Any]) -> torch.Tensor:
        """Paths, raw bytes or uint8 arrays → the normalized float batch the model was trained on."""
        return self.normalize(self.image_pixels(items))

    def tabular_tensor(self, rows: list[Any]) -> torch.Tensor:
        from danlu.data.tabular import TabularEncoder

        if self._tabular is None:
            self._tabular = TabularEncoder.from_schema(self.schema)
        for i, row in enumerate(rows):
            values = row.values() if isinstance(row, dict) else row if isinstance(row, list | tuple) else None
            if values is None:
                raise DataError(f"input {i}: a feature row must be a list of values or an object of column: value")
            for v in values:
                if isinstance(v, float) and not math.isfinite(v):
                    raise DataError(f"input {i}: contains {v}; features must be finite numbers")
        cols = self._tabular.rows_to_columns(rows)
        return torch.from_numpy(self._tabular.transform(cols, where="input", base=0))

    def text_tensor(self, texts: list[Any]) -> torch.Tensor:
        for i, t in enumerate(texts):
            if not isinstance(t, str) or not t.strip():
                raise DataError(f"input {i}: empty or non-string text", hint="send non-empty strings")
        return self._text_encoder.tensor([t.strip() for t in texts])

    def to_tensor(self, inputs: list[Any]) -> torch.Tensor:
        kind = self.schema.kind
        if kind == "image":
            return self.image_tensor(inputs)
        if kind == "text":
            return self.text_tensor(inputs)
        return self.tabular_tensor(inputs)

    # ---------------------------------------------------------------- prediction

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Probabilities [N, C] or regression values [N, T]."""
        from danlu.tasks import to_predictions

        return to_predictions(self.model(x), self.schema)

    def format(self, outputs: torch.Tensor, labels: list[Any], top_k: int = 5) -> list[dict[str, Any]]:
        """Rows of the JSON response (the same shape for ``danlu predict --json`` and the server)."""
        rows = []
        if self.schema.task == "classification":
            classes = self.schema.classes or []
            k = max(1, min(top_k, len(classes)))
            probs, idx = outputs.topk(k, dim=1)
            for label, p, i in zip(labels, probs.tolist(), idx.tolist(), strict=True):
                rows.append({"input": label, "top": [{"label": classes[j], "probability": round(float(q), 6)}
                                                     for q, j in zip(p, i, strict=True)]})
        else:
            names = self.schema.targets or ["value"]
            for label, vals in zip(labels, outputs.tolist(), strict=True):
                rows.append({"input": label, "prediction": {n: float(v) for n, v in zip(names, vals, strict=True)}})
        return rows

    def predict(self, inputs: list[Any], top_k: int = 5, labels: list[Any] | None = None) -> list[dict[str, Any]]:
        if not inputs:
            raise DanluError("nothing to predict", hint="give at least one input")
        x = self.to_tensor(inputs)
        return self.format(self.forward(x), labels if labels is not None else _labels(inputs), top_k)


def finite(obj: Any) -> Any:
    """Non-finite numbers become None, so an answer is always valid JSON (an overflowing model gives inf)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [finite(v) for v in obj]
    return obj


def _labels(inputs: list[Any]) -> list[Any]:
    out = []
    for i, item in enumerate(inputs):
        if isinstance(item, str | Path):
            out.append(str(item))
        elif isinstance(item, bytes | bytearray | np.ndarray) or type(item).__module__.startswith("PIL."):
            out.append(f"input {i}")
        else:
            out.append(item)
    return out


def expand_image_inputs(items: list[str]) -> list[str]:
    """Files stay; folders become their image files (sorted, recursively, through links, hidden ones left
    out as in training); missing paths are an error."""
    from danlu.data.imagefolder import IMAGE_EXTENSIONS, _Scanner

    out = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = [str(f) for f in _Scanner().images_under(p)]
            if not found:
                raise DataError(f"no image files in folder {p}",
                                hint=f"image files end in {' '.join(sorted(IMAGE_EXTENSIONS))}")
            out.extend(found)
        elif p.is_file():
            out.append(str(p))
        else:
            raise DataError(f"no such file or folder: {p}")
    return out
