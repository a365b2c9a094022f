"""One before/after table for every compression: parameters, file size, latency, throughput, test metric.

Every variant (PyTorch fp32, ONNX fp32, ONNX int8, a pruned or distilled run) is timed the same way: the
same inputs, threads pinned to the same count for PyTorch and ONNX Runtime, the median of repeated calls
after a warm-up. The table is printed and written into compress.json / compress.md, one table per method (int8, prune,
distill) beside the others.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from danlu.runs.files import atomic_write_text, write_json

TABLE_JSON, TABLE_MD = "compress.json", "compress.md"
TABLE_FORMAT = "danlu-compress/2"  # {"tables": {key: table}}, one per method
BATCHES = (1, 64)


@dataclass
class Variant:
    """One row of the table."""

    name: str
    parameters: int
    file_bytes: int
    latency_ms: dict[int, float]  # batch size → median milliseconds per call
    metric_name: str
    metric: float | None  # on the test split (None when only the parity sample was at hand)
    agreement: float | None = None  # same argmax (or value within tolerance) as the fp32 model
    note: str = ""

    @property
    def throughput(self) -> float:
        """Samples per second at the largest batch timed."""
        b = max(self.latency_ms)
        return b / (self.latency_ms[b] / 1000) if self.latency_ms[b] > 0 else float("inf")

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["latency_ms"] = {str(k): round(v, 4) for k, v in self.latency_ms.items()}
        out["throughput_per_s"] = round(self.throughput, 1)
        return out


def median_ms(fn: Callable[[Any], Any], x: Any, *, repeats: int = 30, budget_s: float = 3.0) -> float:
    """Median wall time of ``fn(x)`` in ms: 3 warm-up calls, then up to ``repeats`` timed ones within the budget
    (at least 5, so a slow model still gets a median)."""
    for _ in range(3):
        fn(x)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeats and (len(times) < 5 or time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        fn(x)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def torch_forward(model: Any, schema: Any) -> Callable[[Any], Any]:
    """A torch model (+ its postprocessing) as fn(tensor) → numpy, in inference mode."""
    import torch

    from danlu.tasks import to_predictions

    model.eval()

    def run(x: Any) -> Any:
        with torch.inference_mode():
            return to_predictions(model(x), schema).numpy()

    return run


def ort_session(model: bytes | Path, threads: int) -> Any:
    """An ONNX Runtime CPU session pinned to ``threads`` intra-op threads (and one inter-op)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    source = model if isinstance(model, bytes) else os.fspath(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def ort_forward(session: Any) -> Callable[[Any], Any]:
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x.numpy()})[0]


def score_outputs(outputs: Any, labels: Any, schema: Any) -> tuple[str, float]:
    """The headline test metric of stacked outputs: accuracy (%) for classification, R² × 100 for regression,
    so a drop is read in points either way."""
    import torch

    from danlu.tasks import score

    m = score(torch.as_tensor(outputs), torch.as_tensor(labels), schema)
    return ("accuracy", 100 * m["accuracy"]) if schema.task == "classification" else ("r2", 100 * m["r2"])


def agreement(outputs: Any, reference: Any, schema: Any) -> float:
    """Share of samples where two models agree: same argmax, or values within export's tolerance."""
    import numpy as np

    from danlu.export import REGRESSION_ATOL, REGRESSION_RTOL

    if schema.task == "classification":
        return float((outputs.argmax(1) == reference.argmax(1)).mean())
    diff = np.abs(outputs.astype(np.float64) - reference)
    scale = np.abs(reference).max(axis=0, keepdims=True) + 1.0
    return float(np.all(diff <= REGRESSION_ATOL * scale + REGRESSION_RTOL * np.abs(reference), axis=1).mean())


def timing_inputs(batches: list[Any], pad_id: int = 0) -> dict[int, Any]:
    """Batch size → an input tensor of that many test samples (repeated when the split is smaller)."""
    import torch

    if batches[0].dtype in (torch.int64, torch.int32):  # token ids of different lengths: pad to the longest
        longest = max(b.shape[1] for b in batches)
        batches = [torch.nn.functional.pad(b, (0, longest - b.shape[1]), value=pad_id) for b in batches]
    pool = torch.cat(batches)
    out = {}
    for b in BATCHES:
        reps = -(-b // len(pool))
        out[b] = pool.repeat(reps, *([1] * (pool.dim() - 1)))[:b].contiguous()
    return out


def pinned_threads(threads: int) -> Any:
    """A context that sets torch's intra-op threads for the timing and restores them after."""
    import contextlib

    import torch

    @contextlib.contextmanager
    def pin() -> Any:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    return pin()


def time_variant(fn: Callable[[Any], Any], inputs: dict[int, Any], threads: int) -> dict[int, float]:
    with pinned_threads(threads):
        return {b: median_ms(fn, x, repeats=50 if b == 1 else 20) for b, x in inputs.items()}


def machine(threads: int) -> dict[str, Any]:
    import onnxruntime
    import torch

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": threads, "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__}


def markdown(variants: list[Variant], info: dict[str, Any]) -> str:
    """The table as Markdown, with the ratios against the first row."""
    base = variants[0]
    lines = [f"## {info.get('method', 'compression')} of {info.get('run', '?')}", "",
             f"Latency: median of repeated calls, {info['machine']['threads']} thread(s) for PyTorch and ONNX "
             f"Runtime alike, on {info['machine']['cpu']} ({info['machine']['cores']} cores); torch "
             f"{info['machine']['torch']}, onnxruntime {info['machine']['onnxruntime']}.", "",
             "| variant | parameters | file | batch 1 ms | batch 64 ms | samples/s (64) | test metric | agreement |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for v in variants:
        size = f"{v.file_bytes / 1e6:.2f} MB" + (f" ({base.file_bytes / v.file_bytes:.1f}× smaller)"
                                                 if v is not base and v.file_bytes else "")
        b64 = f"{v.latency_ms[64]:.3f}" + (f" ({base.latency_ms[64] / v.latency_ms[64]:.2f}×)" if v is not base else "")
        metric = "–" if v.metric is None else f"{v.metric_name} {v.metric:.2f}"
        agree = "–" if v.agreement is None else f"{100 * v.agreement:.2f} %"
        lines.append(f"| {v.name} | {v.parameters:,} | {size} | {v.latency_ms[1]:.3f} | {b64} | {v.throughput:,.0f} "
                     f"| {metric} | {agree} |")
    notes = [v for v in variants if v.note]
    if notes:
        lines.append("")
        lines += [f"- {v.name}: {v.note}" for v in notes]
    return "\n".join(lines) + "\n"


def write_table(folder: Path, key: str, variants: list[Variant], info: dict[str, Any]) -> str:
    """Add (or replace) the ``key`` table (int8, prune, distill) in the folder's compress.json and compress.md,
    keeping the others: quantizing a pruned run must not erase the table of its pruning. Returns this table's
    Markdown."""
    text = markdown(variants, info)
    tables = {k: v for k, v in read_tables(folder).items() if k != key}
    tables[key] = {**info, "variants": [v.as_json() for v in variants], "markdown": text}
    write_json(folder / TABLE_JSON, {"format": TABLE_FORMAT, "tables": tables})
    atomic_write_text(folder / TABLE_MD, f"# compression tables of {folder.name}\n\n"
                      + "\n".join(t.get("markdown", "") for t in tables.values()))
    return text


def read_tables(folder: Path) -> dict[str, dict[str, Any]]:
    """The tables of compress.json by key; a file written before there were several (one table at the top
    level) counts as the table of its method; a damaged or foreign file counts as none (it is rewritten)."""
    from danlu.errors import DanluError
    from danlu.runs.files import read_json

    path = Path(folder) / TABLE_JSON
    if not path.is_file():
        return {}
    try:
        data = read_json(path)
    except (OSError, DanluError):
        return {}
    if not isinstance(data, dict):
        return {}
    if isinstance(data.get("tables"), dict):
        return {k: v for k, v in data["tables"].items() if isinstance(v, dict)}
    if isinstance(data.get("variants"), list) and isinstance(data.get("machine"), dict):  # the one-table layout
        try:
            rows = [Variant(**{**{k: v[k] for k in FIELDS}, "latency_ms": {int(b): ms for b, ms in
                                                                           v["latency_ms"].items()}})
                    for v in data["variants"]]
            data = {**data, "markdown": markdown(rows, data)}
        except (KeyError, TypeError, ValueError, AttributeError):
            return {}
        return {"int8" if str(data.get("method", "")).startswith("int8") else "prune": data}
    return {}


FIELDS = ("name", "parameters", "file_bytes", "latency_ms", "metric_name", "metric", "agreement", "note")
