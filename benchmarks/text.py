"""Text classification: accuracy, wall time and tokens/s of the four text recipes on the shared corpora.

    python benchmarks/text.py                         # all four (≈ 45 min on 2 cores)
    python benchmarks/text.py chnsenticorp-lstm       # one recipe; extra args are overrides

Targets (issue 3): chnsenticorp-lstm test ≥ 0.88 and sst2-lstm dev ≥ 0.82, each within 10 min;
sst2-minilm dev ≥ 0.88 within 20 min; chnsenticorp-minilm: report. Training tokens/s counts real
(non-pad) tokens; inference tokens/s is Predictor over the test split, batch 256.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import SHARED, print_header, timed_cli  # noqa: E402

RECIPES = ["chnsenticorp-lstm", "sst2-lstm", "sst2-minilm", "chnsenticorp-minilm"]


def token_rates(run: Path) -> tuple[float, float, float]:
    """(mean real tokens per training sample, training tokens/s, inference tokens/s)."""
    import torch

    from danlu import data
    from danlu.api import load_run
    from danlu.models import input_hints
    from danlu.predictor import Predictor

    _, recipe, schema = load_run(run)
    splits, _ = data.load(recipe.data, seed=recipe.seed, hints=input_hints(recipe.model.name, recipe.model.options))
    pad = schema.text["pad_id"]
    per_sample = float((splits.train.x != pad).sum()) / len(splits.train)
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train_rate = sum(h["samples_per_s"] for h in history) / len(history) * per_sample
    predictor = Predictor.load(run)
    texts = splits.test.names
    tokens = int((splits.test.x != pad).sum())
    t0 = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(texts), 256):
            predictor.forward(predictor.to_tensor(texts[i:i + 256]))
    return per_sample, train_rate, tokens / (time.perf_counter() - t0)


def main() -> None:
    os.environ.setdefault("DANLU_DATA", str(SHARED / "datasets"))
    names = [a for a in sys.argv[1:] if "=" not in a] or RECIPES
    overrides = [a for a in sys.argv[1:] if "=" in a]
    print_header("danlu text benchmark")
    runs = tempfile.mkdtemp(prefix="danlu-text-")
    print("| recipe | test accuracy | F1 macro | wall | train tokens/s | inference tokens/s | tokens/sample |")
    print("| --- | --- | --- | --- | --- | --- | --- |", flush=True)
    for name in names:
        wall, res = timed_cli(["train", name, *overrides, "--runs-dir", runs], timeout=3600)
        per, train_rate, infer_rate = token_rates(Path(res["run"]))
        m = res["metrics"]
        print(f"| {name} | {m['accuracy']:.4f} | {m['f1_macro']:.4f} | {wall / 60:.1f} min | {train_rate:,.0f} | "
              f"{infer_rate:,.0f} | {per:.0f} |", flush=True)


if __name__ == "__main__":
    main()
