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
from danlu.outputs import finite_rows
from danlu.schema import Schema

DEFAULT_TOP_K = 3  # labels per answer, for the CLI, the Python API and the server alike
IMAGE_CHUNK = 256  # images decoded and predicted at a time
ROW_CHUNK = 512  # texts or table rows at a time (a 20,000-line file once took 3-5 GB in one batch)


class Predictor:
    def __init__(self, run_dir: Path, recipe: Any, schema: Schema, model: torch.nn.Module):
        self.run_dir, self.recipe, self.schema, self.model = run_dir, recipe, schema, model.eval()
        self._text_encoder: Any = None
        self._tabular: Any = None
        self._normalizer: Any = None

    @classmethod
    def load(cls, run: str | Path, runs_dir: Path | None = None) -> Predictor:
        from danlu.prepare import build_model, load_run
        from danlu.runs.checkpoint import load_model_weights

        run_dir, recipe, schema = load_run(run, runs_dir)
        model = build_model(recipe, schema)
        load_model_weights(run_dir / "model.safetensors", model)
        predictor = cls(run_dir, recipe, schema, model)
        if schema.kind == "text":
            from danlu.data.text.dataset import TextEncoder

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

    def readable_images(self, items: list[Any]) -> tuple[list[int], torch.Tensor, list[str]]:
        """(the indexes of the items that decode, their uint8 pixels, why each other one could not be read)."""
        kept, arrays, problems = [], [], []
        for i, item in enumerate(items):
            try:
                arrays.append(self.image_pixels([item]))
                kept.append(i)
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
        from danlu.data.tabular import encoder_for

        if self._tabular is None:
            self._tabular = encoder_for(self.schema)
        for i, row in enumerate(rows):
            values = row.values() if isinstance(row, dict) else row if isinstance(row, list | tuple) else None
            if values is None:
                raise DataError(f"input {i}: a feature row must be a list of values or an object of column: value")
            for v in values:
                if isinstance(v, float) and not math.isfinite(v):
                    raise DataError(f"input {i}: contains {v}; features must be finite numbers")
        cols = self._tabular.rows_to_columns(rows)
        x = torch.from_numpy(self._tabular.transform(cols, where="input", base=0))
        bad = (~torch.isfinite(x.reshape(len(x), -1))).any(1).nonzero()
        if len(bad):  # normalized images are finite by construction; a huge table value is not
            raise DataError(f"input {int(bad[0])}: a value is too large to represent after normalization",
                            hint="send values in the range the model was trained on")
        return x

    def text_tensor(self, texts: list[Any]) -> torch.Tensor:
        for i, t in enumerate(texts):
            if not isinstance(t, str) or not t.strip():
                raise DataError(f"input {i}: empty or non-string text", hint="send non-empty strings")
        return self._text_encoder.tensor([t.strip() for t in texts])

    def audio_tensor(self, items: list[Any], max_seconds: float | None = None) -> torch.Tensor:
        """Paths, encoded bytes or float arrays (already at the run's rate) → float32 [N, samples], decoded
        exactly as in training (schema.json's ``audio``, and the training cache's int16 samples)."""
        from danlu.data.audio import MAX_SECONDS, AudioFormat, decode_audio, fit_length, to_int16

        fmt = AudioFormat.from_dict(self.schema.audio)
        clips = []
        for i, item in enumerate(items):
            where = item if isinstance(item, str | Path) else f"input {i}"
            try:
                if isinstance(item, np.ndarray):
                    clip = fit_length(np.asarray(item, np.float32).reshape(-1), fmt.samples, fmt.fit)
                else:
                    if isinstance(item, str | Path) and not Path(item).is_file():
                        raise DataError(f"no such file: {item}")
                    clip = decode_audio(item, fmt, max_seconds or MAX_SECONDS)
            except DataError as e:
                raise DataError(f"{where}: {e.message}", hint=e.hint) from None
            # through int16 and back, as the training cache stores clips (data.tensors): the same numbers
            clips.append(torch.from_numpy(to_int16(clip).astype(np.float32) * (1.0 / 32768.0)))
        return torch.stack(clips)

    def to_tensor(self, inputs: list[Any]) -> torch.Tensor:
        kind = self.schema.kind
        if kind == "audio":
            return self.audio_tensor(inputs)
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

    def predict(self, inputs: Any, top_k: int = DEFAULT_TOP_K, labels: list[Any] | None = None,
                skipped: list[str] | None = None) -> list[dict[str, Any]]:
        """Rows for any number of inputs, a chunk at a time (a big folder or file never sits in memory as
        one float batch). Images: paths (folders are expanded), bytes, arrays or PIL images; those that
        cannot be read are left out and described in ``skipped`` (a warning when it is not given). Texts.
        Tables: feature rows (lists or column: value objects), comma-separated strings, or CSV files.
        A non-finite output (a regression overflowing float32) is a DataError naming its input."""
        if isinstance(inputs, str | bytes | Path) or not hasattr(inputs, "__iter__"):
            inputs = [inputs]  # one input, not a sequence of characters
        items = list(inputs)
        if not items:
            raise DanluError("nothing to predict", hint="give at least one input")
        if top_k < 1:
            raise DanluError(f"top_k must be at least 1, got {top_k}")
        kind = self.schema.kind
        if kind == "image":
            items, labels = expand_image_items(items, labels)
        elif kind == "tabular":
            items, labels = tabular_rows(items, labels)
        labels = list(labels) if labels is not None else input_labels(items)
        rows: list[dict[str, Any]] = []
        problems: list[str] = []
        chunk = IMAGE_CHUNK if kind == "image" else ROW_CHUNK
        for start in range(0, len(items), chunk):
            part, names = items[start:start + chunk], labels[start:start + chunk]
            if kind == "image":
                kept, pixels, bad = self.readable_images(part)
                problems += bad
                if not kept:
                    continue
                names = [names[i] for i in kept]
                x = self.normalize(pixels)
            else:
                x = self.to_tensor(part)
            rows += finite_rows(self.format(self.forward(x), names, top_k))  # an overflow is an error
        if skipped is not None:
            skipped.extend(problems)
        else:
            import warnings

            for problem in problems:
                warnings.warn(f"skipped {problem}", stacklevel=2)
        if not rows:
            raise DataError(f"none of the {len(items)} image(s) could be read",
                            hint="give JPEG, PNG, GIF, BMP or WebP files")
        return rows


def input_labels(inputs: list[Any]) -> list[Any]:
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
    from danlu.data.imagefolder import IMAGE_EXTENSIONS, Scanner

    out = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = [str(f) for f in Scanner().images_under(p)]
            if not found:
                raise DataError(f"no image files in folder {p}",
                                hint=f"image files end in {' '.join(sorted(IMAGE_EXTENSIONS))}")
            out.extend(found)
        elif p.is_file():
            out.append(str(p))
        elif p.exists():  # a FIFO would wait for a writer forever, /dev/zero never end
            raise DataError(f"{p} is not an image file but a {_special_kind(p)}",
                            hint="give image files or folders of them")
        else:
            raise DataError(f"no such file or folder: {p}")
    return out


def _special_kind(p: Path) -> str:
    import stat

    mode = p.stat().st_mode
    return ("named pipe (FIFO)" if stat.S_ISFIFO(mode) else "device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "socket" if stat.S_ISSOCK(mode) else "special file")


def expand_image_items(items: list[Any], labels: list[Any] | None) -> tuple[list[Any], list[Any] | None]:
    """Paths expanded (folders to their images, a missing path is an error); bytes, arrays and PIL images
    kept as they are. Given labels follow their items (a folder's images are labelled by their paths)."""
    out, names = [], []
    for i, item in enumerate(items):
        if isinstance(item, str | Path):
            found = expand_image_inputs([str(item)])
            out += found
            names += found if labels is None or Path(item).is_dir() else [labels[i]]
        else:
            names.append(labels[i] if labels is not None else f"input {len(out)}")  # its place among all inputs
            out.append(item)
    return out, names


TABLE_SUFFIXES = (".csv", ".tsv", ".txt")


def tabular_rows(items: list[Any], labels: list[Any] | None) -> tuple[list[Any], list[Any]]:
    """Feature rows from CSV files (a header naming the columns), comma-separated strings typed inline, or
    rows already as lists or column: value objects; each labelled (a file's rows as ``name:line``)."""
    from danlu.data.tabular import read_csv

    rows, names = [], []
    for i, item in enumerate(items):
        given = labels[i] if labels is not None else None
        if isinstance(item, str | Path) and Path(item).suffix.lower() in TABLE_SUFFIXES:
            p = Path(item)
            if not p.is_file():
                raise DataError(f"{item}: no such file", hint=f"paths are relative to {Path.cwd()}; "
                                                              "or type a row inline: danlu predict RUN 1.5,2,red")
            header, body = read_csv(p)
            for j, r in enumerate(body):
                rows.append(dict(zip(header, r, strict=True)))
                names.append(f"{p.name}:{j + 1}")
        elif isinstance(item, str):
            rows.append([v.strip() for v in item.split(",")])
            names.append(given if given is not None else item)
        else:
            rows.append(item)
            names.append(given if given is not None else f"input {i}")
    return rows, names
