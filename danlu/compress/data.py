"""The samples compression needs from a run's data: the test split with labels (to score each variant), and a
few training samples (to calibrate static quantization), preprocessed exactly as in evaluation."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

# rows per model call: a graph's intermediates grow with the batch; the pitch track's lag products in ONNX are
# [batch, frames, lags, window], ~300 MB per 64 clips of 0.64 s (mandarin-tones-cross-speaker's test split in
# eval batches of 512 was killed for memory)
MAX_BATCH = 64


@dataclass
class TestSet:
    """Model-ready CPU batches of the test split; ``labels`` is None when only the parity sample was readable
    (then variants are compared with the fp32 model's outputs, not scored)."""

    batches: list[Any]
    labels: Any | None
    train: Any | None  # the training split, for calibration (None with the parity sample)
    note: str = ""


def load_test_set(predictor: Any, data_dir: Path | None, say: Any = print) -> TestSet:
    from danlu.export import test_split_or_parity

    test, train, parity, _ = test_split_or_parity(predictor, data_dir, "the compressed model", "compress")
    if parity is not None:
        note = (f"the run's data cannot be read; compared on the {len(parity)} test samples kept in the run "
                "folder (agreement with fp32, no labels)")
        say(f"note: {note}")
        return TestSet(list(parity.split(64)), None, None, note)
    return test_set_of(predictor, test, train)


def test_set_of(predictor: Any, test: Any, train: Any = None) -> TestSet:
    """A split already at hand (a training run's own test split) as model-ready CPU batches with labels."""
    import torch

    from danlu.inference import make_loader

    loader = make_loader(test, predictor.schema, predictor.recipe, train=False, generator=None,
                         device=torch.device("cpu"), channels_last=False)
    xs, ys = [], []
    for x, y in loader:
        xs.extend(part.contiguous() for part in x.split(MAX_BATCH))
        ys.append(y)
    return TestSet(xs, torch.cat(ys), train)


def calibration_batches(predictor: Any, train: Any, samples: int, batch: int = 32) -> list[Any]:
    """The first ``samples`` training inputs (the split is already shuffled), unaugmented, as CPU batches."""
    import torch

    from danlu.inference import make_loader

    loader = make_loader(train, predictor.schema, predictor.recipe, train=False, generator=None,
                         device=torch.device("cpu"), channels_last=False)
    out, seen = [], 0
    for x, _ in loader:
        for part in x.split(batch):
            out.append(part[: samples - seen].contiguous())
            seen += len(out[-1])
            if seen >= samples:
                return out
    return out
