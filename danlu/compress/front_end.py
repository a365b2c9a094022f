"""The nodes of an audio model's graph that int8 must leave in float: its feature front end.

Audio models take the waveform; their first layers (the STFT as DFT matrix products, the mel filterbank, the
log, YIN's lag products) are fixed computations, not learned ones. Quantizing them to int8 rounds the power
spectrum before the log: measured on a bc_resnet run, dynamic quantization of the DFT products agreed with
fp32 on 25 % of the test clips. So every node under a parameter-free top-level module of the model (for
bc_resnet and tone_net: ``spectrogram``, ``pitch``, ``augment``) stays float, and only the learned layers
after it are quantized.

A node's module is read from its name (the TorchScript exporter writes ``/model/spectrogram/MatMul``) or
from the dynamo exporter's ``pkg.torch.onnx.name_scopes`` metadata (``['', 'model', 'model.spectrogram',
...]``).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

SCOPES_KEY = "pkg.torch.onnx.name_scopes"


def front_end_modules(model: Any) -> list[str]:
    """Names of the model's top-level children that hold no parameters (feature extraction, augmentation)."""
    return [name for name, child in model.named_children() if not any(True for _ in child.parameters())]


def _scopes(node: Any) -> list[str]:
    """Module paths a node lies under, relative to the exported wrapper's ``model`` attribute."""
    found = []
    parts = node.name.split("/")
    if len(parts) > 2 and parts[0] == "" and parts[1] == "model":
        found.append(".".join(parts[2:-1]))
    for prop in node.metadata_props:
        if prop.key == SCOPES_KEY:
            try:
                names = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                continue
            found += [n[len("model."):] for n in names if isinstance(n, str) and n.startswith("model.")]
    return found


def front_end_nodes(path: Path, modules: list[str]) -> list[str]:
    """Names of the graph's nodes that lie under one of ``modules`` (see the module's doc)."""
    import onnx

    if not modules:
        return []
    graph = onnx.load(str(path)).graph
    out = []
    for node in graph.node:
        if node.name and any(s == m or s.startswith(m + ".") for s in _scopes(node) for m in modules):
            out.append(node.name)
    return out
