"""Where a compressed or distilled run came from: ``lineage.json`` in its folder (source run, that run's
weights digest, the method and its settings), and the int8 model quantized beside a run's own, both shown by
``danlu runs show``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from danlu.runs.files import read_json
from danlu.runs.lineage import read_lineage, write_lineage

__all__ = ["read_lineage", "write_lineage", "describe", "int8_variant", "describe_int8"]

def describe(info: dict[str, Any]) -> str:
    """One line for ``danlu runs show``."""
    method = info.get("method", "?")
    if method == "prune":
        return (f"pruned {100 * info.get('fraction', 0):.0f} % of {info.get('model', 'the model')}'s channels/units "
                f"from {info.get('source')} (weights sha256 {str(info.get('source_weights_sha256', ''))[:12]}), "
                f"fine-tuned {info.get('finetune_epochs')} epoch(s); sizes {info.get('before')} → {info.get('after')}")
    if method == "distill":
        return (f"distilled from teacher {info.get('teacher')} (weights sha256 "
                f"{str(info.get('teacher_weights_sha256', ''))[:12]}), temperature {info.get('temperature')}, "
                f"alpha {info.get('alpha')}")
    return f"{method}: {info}"


def int8_variant(run_dir: Path) -> dict[str, Any] | None:
    """model.int8.onnx's metadata beside the run's model, with ``current`` (quantized from the present weights),
    or None when the run has no int8 model."""
    from danlu.compress.quantize import INT8_META, INT8_NAME, int8_is_current

    meta_path = Path(run_dir) / INT8_META
    if not (Path(run_dir) / INT8_NAME).is_file() or not meta_path.is_file():
        return None
    try:
        meta = read_json(meta_path)
    except (OSError, ValueError):
        meta = None
    if not isinstance(meta, dict):
        return {"damaged": f"{meta_path} is not a JSON object", "current": False}
    return {**meta, "current": int8_is_current(Path(run_dir))}


def describe_int8(info: dict[str, Any]) -> str:
    """One line for ``danlu runs show``: the int8 variant, its metrics and whether it is stale."""
    if "damaged" in info:
        return f"int8: {info['damaged']} (quantize again: danlu compress RUN --quantize int8)"
    calib = f", {info.get('calibration_samples')} calibration samples" if info.get("mode") == "static" else ""

    def pts(v: Any) -> str:
        return f"{v:.2f}" if isinstance(v, int | float) else "?"

    agree = info.get("agreement")
    line = (f"int8: model.int8.onnx ({info.get('mode')}{calib}; {info.get('metric')} {pts(info.get('fp32'))} fp32 → "
            f"{pts(info.get('int8'))} int8, agreement {pts(100 * agree if isinstance(agree, int | float) else None)} "
            "%)")
    if not info.get("current"):
        line += "; stale: the weights changed since, quantize again (danlu compress RUN --quantize int8)"
    return line
