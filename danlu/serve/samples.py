"""A few test-set inputs of a run, in the form the prediction page sends them, so a visitor without a file
of their own can try the model in one click.

They come from the run's parity sample (parity.safetensors: the first test inputs as the model saw them),
so they need nothing but the run folder. Images are turned back into pixels (the normalization undone,
rounded to uint8: the same bytes the test image had); word and character texts are the tokens joined
(as the tokenizer saw them, lowercased and cut at max_len); numeric tables are the features unscaled.
Inputs that cannot be turned back (a pretrained tokenizer's ids, one-hot categories) give no samples.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

from danlu.schema import Schema


def test_samples(run_dir: Path, schema: Schema, n: int = 6) -> list[dict[str, Any]]:
    """Up to ``n`` samples: {"name", "input"} with a PNG data URL, a text, or a feature row."""
    path = Path(run_dir) / "parity.safetensors"
    if not path.is_file():
        return []
    from safetensors.torch import load_file

    from danlu.errors import RunError
    from danlu.runs.files import LIMITS, check_run_file

    try:
        check_run_file(path, within=run_dir)
        if path.stat().st_size > LIMITS["json"]:  # a parity sample is a few test inputs: kilobytes
            return []
        x = load_file(str(path))["inputs"][:n]
    except RunError:
        return []
    except Exception:  # noqa: BLE001 - a damaged parity file just means no samples (export reports it)
        return []
    if not _fits(x, schema):  # a parity file of another shape (edited, or another run's) gives no samples
        return []
    if schema.kind == "image":
        images = _pixels(x, schema)
        return [{"name": f"test sample {i + 1}", "input": _png_data_url(img)} for i, img in enumerate(images)]
    if schema.kind == "text":
        return _texts(run_dir, schema, x)
    return _rows(schema, x)


def _fits(x: Any, schema: Schema) -> bool:
    """Whether the parity inputs have the shape this run's model takes: [N, C, H, W] images with C 1 or 3,
    [N, L] token ids, [N, F] table rows (the file is trusted no further than the schema)."""
    shape = list(schema.input_shape or [])
    if x.ndim != len(shape) + 1 or x.shape[0] == 0:
        return False
    if schema.kind == "text":  # token ids; a text may be shorter or longer than max_len
        return not x.is_floating_point()
    if list(x.shape[1:]) != shape:
        return False
    return x.shape[1] in (1, 3) and x.is_floating_point() if schema.kind == "image" else True


def _pixels(x: Any, schema: Schema) -> list[Any]:
    import torch

    c = x.shape[1]
    mean = torch.tensor(schema.mean or [0.0] * c).view(1, -1, 1, 1)
    std = torch.tensor(schema.std or [1.0] * c).view(1, -1, 1, 1)
    pixels = ((x.float() * std + mean) * 255).round().clamp(0, 255).to(torch.uint8)
    return [p.permute(1, 2, 0).numpy() for p in pixels]


def _png_data_url(hwc: Any) -> str:
    from PIL import Image

    img = Image.fromarray(hwc[:, :, 0], mode="L") if hwc.shape[2] == 1 else Image.fromarray(hwc, mode="RGB")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _texts(run_dir: Path, schema: Schema, x: Any) -> list[dict[str, Any]]:
    from danlu.errors import RunError
    from danlu.runs.files import read_json_file

    tokenizer = schema.text.get("tokenizer")
    vocab_path = Path(run_dir) / "vocab.json"
    if tokenizer == "pretrained" or not vocab_path.is_file():
        return []
    try:
        vocab = read_json_file(vocab_path, within=run_dir)
        tokens = vocab["tokens"]
    except (OSError, ValueError, KeyError, TypeError, RunError):
        return []
    pad = int(schema.text.get("pad_id", 0))
    sep = " " if tokenizer == "word" else ""
    out = []
    for i, row in enumerate(x.tolist()):
        words = [tokens[t] for t in row if t != pad and 0 <= t < len(tokens)]
        if words:
            out.append({"name": f"test sample {i + 1}", "input": sep.join(words)})
    return out


def _rows(schema: Schema, x: Any) -> list[dict[str, Any]]:
    features = schema.features or []
    if schema.categories or schema.table or x.ndim != 2 or x.shape[1] != len(features):
        return []
    mean = schema.mean or [0.0] * len(features)
    std = schema.std or [1.0] * len(features)
    out = []
    for i, row in enumerate(x.tolist()):
        values = {f: round(v * s + m, 6) for f, v, m, s in zip(features, row, mean, std, strict=True)}
        out.append({"name": f"test sample {i + 1}", "input": values})
    return out
