"""``danlu export RUN`` for MF and two-tower runs: the scoring graph (user index → scores over the catalogue,
and the user's vector) as ONNX, the embeddings as safetensors, checked against the torch model.

Neighbour models (item-kNN, EASE) score from a user's whole history rather than from an embedding, so they are
served from the run folder (``danlu serve``) and not exported.
"""

from __future__ import annotations

import io
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from danlu.errors import DanluError

PARITY_ATOL = 1e-4


class EmbeddingScorer(nn.Module):
    """scores = U[user] · Vᵀ + b: the whole inference of MF and of the two-tower model (item tower precomputed)."""

    def __init__(self, users: torch.Tensor, items: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        self.register_buffer("users", users)
        self.register_buffer("items", items)
        self.register_buffer("bias", bias)

    def forward(self, user: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u = self.users[user]
        return u @ self.items.T + self.bias, u


def export_recommender(run_dir: Path, say: Any = print) -> dict[str, Any]:
    """recommend.onnx + embeddings.safetensors in the run folder; raises when ONNX Runtime disagrees."""
    import onnxruntime as ort

    from danlu.recommend.predict import RecommenderRun
    from danlu.runs.files import atomic_write_bytes, save_tensors, write_json

    t0 = time.perf_counter()
    served = RecommenderRun(run_dir)
    model = served.model
    if not hasattr(model, "item_vectors"):
        raise DanluError(f"ONNX export covers the embedding models (mf, two_tower, lightgcn); "
                         f"{served.recipe.model.name} scores from each user's whole history",
                         hint=f"serve it from the run folder: danlu serve {run_dir}")
    with torch.no_grad():
        users = (model.user_table() if hasattr(model, "user_table") else model.user.weight).detach().clone()
        items = model.item_vectors().detach().clone()
        bias = model.item_bias.weight.detach().reshape(-1).clone()
    scorer = EmbeddingScorer(users, items, bias).eval()
    example = torch.arange(min(4, len(users)), dtype=torch.int64)
    buf = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation notice (a 2-op graph; it is exact)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(scorer, (example,), buf, input_names=["user"], output_names=["scores", "user_vector"],
                          dynamic_axes={"user": {0: "batch"}, "scores": {0: "batch"}, "user_vector": {0: "batch"}},
                          opset_version=17, dynamo=False)
    onnx_path = Path(run_dir) / "recommend.onnx"
    atomic_write_bytes(onnx_path, buf.getvalue())
    save_tensors(Path(run_dir) / "embeddings.safetensors", {"users": users, "items": items, "item_bias": bias})
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    worst, same_top = 0.0, True
    for start in range(0, len(users), 256):
        idx = torch.arange(start, min(len(users), start + 256), dtype=torch.int64)
        want = scorer(idx)[0].numpy()
        got = session.run(["scores"], {"user": idx.numpy()})[0]
        worst = max(worst, float(np.abs(got - want).max()))
        same_top &= bool((np.argsort(-got, axis=1, kind="stable")[:, :10]
                          == np.argsort(-want, axis=1, kind="stable")[:, :10]).all())
    result = {"onnx": str(onnx_path), "embeddings": str(Path(run_dir) / "embeddings.safetensors"),
              "users": len(users), "items": len(items), "dim": int(items.shape[1]),
              "parity_max_abs_diff": worst, "parity_top10_identical": same_top,
              "export_s": round(time.perf_counter() - t0, 2)}
    if worst > PARITY_ATOL:
        raise DanluError(f"ONNX scores differ from torch's by up to {worst:.2e} (limit {PARITY_ATOL:g})",
                         hint="report this with the run; the torch model in the run folder is unaffected")
    write_json(Path(run_dir) / "recommend_onnx.json", result)
    say(f"parity over all {len(users)} users: max |diff| {worst:.2e}, top-10 identical: {same_top}")
    return result

