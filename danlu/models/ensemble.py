"""A weighted blend of trained table models (lightgbm, tabular_net) as one danlu model.

The members read the same column plan (same data section, same seed: the same schema), so one encoded row
feeds them all. ``forward`` blends what the members predict, probabilities (returned as their logs: softmax
gives them back) or standardized values (linear, so the blend of standardized values is the standardized
blend), so evaluation, predict, serve and the studio treat the ensemble like any run. The members' weights
live in model.safetensors under ``members.<i>.`` (LightGBM's text model as a uint8 buffer, the net's
tensors); the blend weights are JSON in recipe.yaml (``model.members[].weight``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from danlu.schema import Schema


class TableEnsemble(nn.Module):
    """``members``: (name, weight, module). ``fits_itself``: assembled from trained runs, never trained here."""

    fits_itself = True
    assembles = True
    onnx_exporter = "onnxmltools + torch (members), onnx (blend)"

    def __init__(self, schema: Schema, members: list[tuple[str, float, nn.Module]]):
        super().__init__()
        self.schema = schema
        self.names = [name for name, _, _ in members]
        self.weights = [float(w) for _, w, _ in members]
        self.members = nn.ModuleList(m for _, _, m in members)
        # LightGBM members' buffers are sized by the trained model in the file (danlu/runs/checkpoint.py)
        self.sized_by_file = tuple(f"members.{i}.{key}" for i, m in enumerate(self.members)
                                   for key in getattr(m, "sized_by_file", ()))
        self.anchor = nn.Parameter(torch.zeros(0), requires_grad=False)  # a device for callers that ask

    def member_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each member's prediction: probabilities [N, C] or standardized values [N, T]."""
        outs = []
        for m in self.members:
            out = m(x).float()
            outs.append(torch.softmax(out, 1) if self.schema.task == "classification" else out)
        return outs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blend = sum(w * out for w, out in zip(self.weights, self.member_outputs(x), strict=True))
        if self.schema.task == "classification":
            return torch.log(blend.clamp_min(1e-12))
        return blend

    def describe(self) -> str:
        return " + ".join(f"{w:.2f} {n}" for n, w in zip(self.names, self.weights, strict=True))

    # ------------------------------------------------------------ export

    def to_onnx(self, width: int) -> bytes:
        """One ONNX graph: each member's own export (onnxmltools for LightGBM, torch for the net, each with its
        postprocessing) fed the same ``input``, their outputs weighted and summed."""
        from danlu.errors import DanluError
        from danlu.models.ensemble_onnx import combine

        graphs = []
        for name, m in zip(self.names, self.members, strict=True):
            try:
                graphs.append(member_graph(m, self.schema, width))
            except ImportError:
                raise
            except Exception as e:  # the torch exporter's many error types for an op or API it lacks
                raise DanluError(f"the ensemble's member '{name}' could not be exported to ONNX ({type(e).__name__}: "
                                 f"{str(e).strip()[:160]}), so no graph combines the members",
                                 hint="serve it with the PyTorch backend instead: danlu serve RUN --backend torch"
                                 ) from None
        return combine(graphs, self.weights, self.schema, width)


def member_graph(member: nn.Module, schema: Schema, width: int) -> Any:
    """A member's ONNX model whose output is what the predictor returns (probabilities or target units)."""
    import io
    import warnings

    import onnx

    if hasattr(member, "to_onnx"):
        return onnx.load_from_string(member.to_onnx(width))
    from danlu.tasks import to_predictions

    class WithPostprocessing(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = member

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return to_predictions(self.model(x), schema)

    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(WithPostprocessing().eval(), (torch.zeros(2, width),), buf, dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["out"], dynamic_axes={"input": {0: "batch"},
                                                                                      "out": {0: "batch"}})
    return onnx.load_from_string(buf.getvalue())
