"""Article 4: a CNN on MNIST (recipe mnist-cnn), and the article's first model, a line fitted to y = 2x.

The line: a generated table (x uniform in [-5, 5], y = 2x) trained as a tabular regression with the
diabetes-mlp recipe's MLP; the same fit done by hand, gradient by gradient: `danlu scratch worked-example`.

    python examples/mnist_cnn_and_linear_regression.py           # full: fails below 99.0 % or R² 0.999
    python examples/mnist_cnn_and_linear_regression.py --small   # CI: 2,000 MNIST images, 1 epoch
"""

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import danlu

SMALL = "--small" in sys.argv or os.environ.get("DANLU_EXAMPLE_SMALL") == "1"
TARGET, TARGET_R2 = (0.70, 0.95) if SMALL else (0.990, 0.999)  # small: far above chance (10 %) and a fit

t0 = time.perf_counter()
cnn = danlu.train("mnist-cnn", ["data.limit_train=2000", "train.epochs=1"] if SMALL else [], progress=not SMALL)
with tempfile.TemporaryDirectory() as tmp:
    x = np.random.default_rng(0).uniform(-5, 5, 400)
    (Path(tmp) / "line.csv").write_text("x,y\n" + "".join(f"{v:.6f},{2 * v:.6f}\n" for v in x))
    line = danlu.train("diabetes-mlp", ["data.name=csv", f"data.path={tmp}/line.csv", "data.target=y"]
                       + (["train.epochs=30"] if SMALL else []), progress=not SMALL)
    at3 = danlu.predict(line.run, [[3.0]])[0]["prediction"]["y"]
acc, r2 = cnn.metrics["accuracy"], line.metrics["r2"]
print(f"mnist-cnn: test accuracy {acc:.4f} (target {TARGET}); y = 2x: R² {r2:.5f} (target {TARGET_R2}), "
      f"f(3) = {at3:.3f}; {time.perf_counter() - t0:.1f} s")
print(json.dumps({"example": "mnist_cnn_and_linear_regression", "accuracy": acc, "target": TARGET, "r2": r2,
                  "f_of_3": at3, "small": SMALL, "wall_s": round(time.perf_counter() - t0, 1), "run": str(cnn.run)}))
sys.exit(0 if acc >= TARGET and r2 >= TARGET_R2 else f"missed the target: {acc:.4f} / R² {r2:.5f}")
