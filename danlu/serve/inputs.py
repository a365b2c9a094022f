"""Request bodies → validated model inputs, with an error that says exactly what was wrong.

JSON: ``{"inputs": [...], "top_k": 3}`` holding base64 images (plain or data URLs), texts, or feature rows
(lists in column order or objects keyed by column name). Multipart: image files in the field ``files``.
Image strings are always decoded as base64, never opened as paths: a client cannot make the server read
its own files.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from danlu.data.tabular import MISSING
from danlu.predictor import DEFAULT_TOP_K  # one default for the CLI, the API and the server
from danlu.schema import Schema
from danlu.serve.refusal import RequestError

FLOAT32_MAX = 3.4028234663852886e38
MAX_IMAGE_PIXELS = 40_000_000  # larger images are refused from their header (a small PNG can unpack to gigabytes)
__all__ = ["MAX_IMAGE_PIXELS", "PredictRequest", "RequestError", "parse_json", "parse_uploads"]
_DATA_URL = re.compile(r"^data:([\w.+-]+/[\w.+-]+)?((?:;[\w.+-]+=[\w.+-]+)*)(;base64)?,", re.IGNORECASE)


@dataclass
class PredictRequest:
    inputs: list[Any]  # what Predictor.to_tensor takes: image bytes, texts, or feature rows
    labels: list[Any]  # the "input" field of each response row
    top_k: int


def parse_json(body: bytes, schema: Schema, max_inputs: int) -> PredictRequest:
    """A JSON request body → PredictRequest, or RequestError."""
    try:
        payload = json.loads(body, parse_constant=_reject_constant)
    except RequestError:
        raise
    except (ValueError, UnicodeDecodeError) as e:
        raise RequestError("the body is not valid JSON", str(e)) from None
    except RecursionError:
        raise RequestError("the JSON is nested too deeply", 'send {"inputs": [...]} with flat inputs') from None
    if not isinstance(payload, dict):
        raise RequestError("the body must be a JSON object", 'e.g. {"inputs": [...], "top_k": 3}')
    unknown = sorted(set(payload) - {"inputs", "top_k"})
    if unknown:
        raise RequestError(f"unknown field(s) {', '.join(map(repr, unknown))}",
                           'the body takes "inputs" (a list) and optionally "top_k" (an integer)')
    if "inputs" not in payload:
        raise RequestError('missing field "inputs"', 'e.g. {"inputs": [...], "top_k": 3}')
    items = payload["inputs"]
    if not isinstance(items, list):
        raise RequestError('"inputs" must be a list', f"got {type(items).__name__}")
    _check_count(len(items), max_inputs)
    top_k = parse_top_k(payload.get("top_k", DEFAULT_TOP_K))
    kind = schema.kind
    if kind in ("image", "audio"):  # audio: base64 WAV/FLAC/OGG/MP3 bytes, decoded by the engine
        return PredictRequest([decode_base64_image(v, i) for i, v in enumerate(items)],
                              [f"input {i}" for i in range(len(items))], top_k)
    if kind == "text":
        for i, t in enumerate(items):
            if not isinstance(t, str) or not t.strip():
                raise RequestError(f"input {i}: a text must be a non-empty string", f"got {_describe(t)}")
        return PredictRequest(list(items), list(items), top_k)
    for i, row in enumerate(items):
        check_row(row, i, schema.features or [], schema.non_numeric_columns())
    return PredictRequest(list(items), list(items), top_k)


def parse_uploads(files: list[tuple[str, bytes]], top_k: Any, kind: str, max_inputs: int) -> PredictRequest:
    """Image (or, for audio models, sound) files from a multipart form → PredictRequest, or RequestError."""
    if kind not in ("image", "audio"):
        raise RequestError(f"file uploads are for image and audio models; this is a {kind} model",
                           'send JSON: {"inputs": [...], "top_k": 3}')
    if not files:
        raise RequestError("no files in the form", "upload one or more images in the field 'files'")
    _check_count(len(files), max_inputs)
    for i, (name, data) in enumerate(files):
        if not data:
            raise RequestError(f"input {i} ({name}): the file is empty")
    return PredictRequest([d for _, d in files], [name or f"input {i}" for i, (name, _) in enumerate(files)],
                          parse_top_k(DEFAULT_TOP_K if top_k is None else top_k))


def parse_top_k(value: Any) -> int:
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():  # not "²" or "١٢"
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RequestError('"top_k" must be a positive integer', f"got {_describe(value)}")
    return value


def decode_base64_image(value: Any, i: int) -> bytes:
    """A base64 string or data URL → the image's bytes (decoded, and checked for size, by the engine)."""
    if not isinstance(value, str):
        raise RequestError(f"input {i}: an image must be a base64 string or a data URL", f"got {_describe(value)}")
    text = value.strip()
    match = _DATA_URL.match(text)
    if match:
        if not match.group(3):
            raise RequestError(f"input {i}: the data URL is not base64-encoded", "use data:image/png;base64,...")
        text = text[match.end():]
    try:  # the usual case, one C pass: strict accepts only what the checks below accept, and decodes it alike
        data = binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        data = _lenient_base64(text, i)
    if not data:
        raise RequestError(f"input {i}: the image is empty")
    return data


def _lenient_base64(text: str, i: int) -> bytes:
    """Base64 with line breaks, missing padding or the URL-safe alphabet; validate=True's regex costs
    ~0.1 ms on a one-second clip, so well-formed input skips this."""
    text = "".join(text.split())
    text += "=" * (-len(text) % 4)
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        try:  # URL-safe alphabet (- and _), as some clients send it
            data = base64.b64decode(text, altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            raise RequestError(f"input {i}: not valid base64",
                               "send the image file's bytes base64-encoded, or a data URL") from None
    return data


def check_row(row: Any, i: int, features: list[str], categories: dict[str, list[str]] | set[str]) -> None:
    """A feature row: a list in column order or an object by column name; numbers (or numeric strings),
    category names for categorical columns, null for missing."""
    if isinstance(row, dict):
        unknown = [k for k in row if k not in features]
        missing = [f for f in features if f not in row]
        if unknown or missing:
            parts = ([f"unknown column(s) {_names(unknown)}"] if unknown else []) + \
                    ([f"missing column(s) {_names(missing)} (send null for a missing value)"] if missing else [])
            raise RequestError(f"input {i}: {'; '.join(parts)}", {"expected_columns": features})
        values = list(row.values())
    elif isinstance(row, list):
        if len(row) != len(features):
            raise RequestError(f"input {i}: {len(row)} values, the model expects {len(features)}",
                               {"expected_columns": features})
        values = row
    else:
        raise RequestError(f"input {i}: a feature row must be a list of values or an object of column: value",
                           f"got {_describe(row)}")
    names = list(row) if isinstance(row, dict) else features
    for name, v in zip(names, values, strict=True):
        if isinstance(v, bool) or not (v is None or isinstance(v, int | float | str)):
            raise RequestError(f"input {i}, column '{name}': expected a number, a category name or null",
                               f"got {_describe(v)}")
        if name in categories or v is None:
            continue
        problem = _numeric_problem(v)
        if problem:
            raise RequestError(f"input {i}, column '{name}': {problem}",
                               f"send finite numbers within ±{FLOAT32_MAX:.4g}, or null when missing")


def _numeric_problem(v: int | float | str) -> str | None:
    """What is wrong with a value for a numeric column, or None (strings that spell "missing" are fine)."""
    if isinstance(v, str):
        if v.strip().lower() in MISSING:
            return None
        if not v.strip().isascii():
            return f"{v!r} is not a number (write digits 0-9)"
        try:
            number = float(v)
        except ValueError:
            return f"{v!r} is not a number"
    else:
        try:
            number = float(v)
        except OverflowError:  # an integer of hundreds of digits
            return f"{str(v)[:20]}... is too large for the model (float32)"
    if not math.isfinite(number):
        return f"{v} is not a finite number"
    if abs(number) > FLOAT32_MAX:
        return f"{v} is too large for the model (float32)"
    return None


def _check_count(n: int, max_inputs: int) -> None:
    if n == 0:
        raise RequestError("no inputs", "send at least one input")
    if n > max_inputs:
        raise RequestError(f"{n} inputs in one request; at most {max_inputs} are allowed",
                           "split the inputs over several requests")


def _reject_constant(name: str) -> Any:
    raise RequestError(f"the body contains {name}, which is not a number", "send finite numbers (or null if missing)")


def _names(names: list[str], shown: int = 5) -> str:
    text = ", ".join(map(repr, names[:shown]))
    return text + (f" and {len(names) - shown} more" if len(names) > shown else "")


def _describe(v: Any) -> str:
    text = json.dumps(v, ensure_ascii=False, default=str)
    return f"{type(v).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"
