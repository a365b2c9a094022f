"""Article 1: an MLP on MNIST (Flatten → Dense 128 ReLU → Dropout 0.2 → Dense 10, Adam): recipe mnist-mlp.

    python examples/mnist_mlp.py           # full data, the recipe's 4 epochs; fails below 97.6 % test accuracy
    python examples/mnist_mlp.py --small   # CI: 2,000 training images, 1 epoch (also DANLU_EXAMPLE_SMALL=1)

MNIST is found as danlu finds it (DANLU_DATA, e.g. ../shared/datasets). The math behind it, by hand:
`danlu scratch worked-example`.
"""

import json
import os
import sys
import time

import danlu

SMALL = "--small" in sys.argv or os.environ.get("DANLU_EXAMPLE_SMALL") == "1"
TARGET = 0.50 if SMALL else 0.976  # small: a floor far above chance (10 %); full: the article's 97.6 %

t0 = time.perf_counter()
result = danlu.train("mnist-mlp", ["data.limit_train=2000", "train.epochs=1"] if SMALL else [], progress=not SMALL)
val = danlu.evaluate(result.run, "val")["metrics"]["accuracy"]  # report-val.md and plots in the run folder
acc = result.metrics["accuracy"]
print(f"mnist-mlp: test accuracy {acc:.4f} (val {val:.4f}) in {time.perf_counter() - t0:.1f} s; target {TARGET}")
print(json.dumps({"example": "mnist_mlp", "accuracy": acc, "target": TARGET, "small": SMALL,
                  "wall_s": round(time.perf_counter() - t0, 1), "run": str(result.run)}))
sys.exit(0 if acc >= TARGET else f"missed the target: {acc:.4f} < {TARGET}")
