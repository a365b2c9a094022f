"""Article 3: a Chinese review sentiment classifier, on ChnSentiCorp: recipe chnsenticorp-lstm.

The article splits Chinese on whitespace (one token per sentence: Chinese has no spaces) and trains
Embedding 16 → LSTM 32 on three sentences. Here: character tokens, a BiLSTM over packed sequences, 9,600
reviews. Its transfer-learning part: --transfer also fine-tunes MiniLM-L6 (chnsenticorp-minilm), the one
pretrained text encoder danlu ships offline; it is English-centric (Chinese becomes characters, many of them
unknown), so it is reported, not held to the LSTM's target.

    python examples/chinese_reviews.py              # full: 4 epochs; fails below 0.88 test accuracy
    python examples/chinese_reviews.py --transfer   # and MiniLM (~12 min on 2 CPU cores)
    python examples/chinese_reviews.py --small      # CI: 2,000 reviews, 1 epoch, a smaller BiLSTM
"""

import json
import os
import sys
import time

import danlu

SMALL = "--small" in sys.argv or os.environ.get("DANLU_EXAMPLE_SMALL") == "1"
TARGET = 0.55 if SMALL else 0.88  # small: above chance (50 %); full: issue 3's target, 0.890 measured

t0 = time.perf_counter()
small = ["data.limit_train=2000", "train.epochs=1", "data.max_len=64", "model.hidden=64", "model.embed_dim=64",
         "train.batch_size=32"]
result = danlu.train("chnsenticorp-lstm", small if SMALL else [], progress=not SMALL)
for p in danlu.predict(result.run, ["这家酒店很好，服务周到", "房间太小，隔音很差"], top_k=1):
    print(p["input"], "→", p["top"][0]["label"], f"{p['top'][0]['probability']:.2f}")
acc = result.metrics["accuracy"]
out = {"example": "chinese_reviews", "accuracy": acc, "target": TARGET, "small": SMALL, "run": str(result.run)}
if "--transfer" in sys.argv:
    out["minilm_accuracy"] = danlu.train("chnsenticorp-minilm", progress=not SMALL).metrics["accuracy"]
print(f"chnsenticorp-lstm: test accuracy {acc:.4f} in {time.perf_counter() - t0:.1f} s; target {TARGET}")
print(json.dumps(out | {"wall_s": round(time.perf_counter() - t0, 1)}))
sys.exit(0 if acc >= TARGET else f"missed the target: {acc:.4f} < {TARGET}")
