"""The nodes of an audio model's graph that int8 must leave in float: its feature front end.

Audio models take the waveform; their first layers (the STFT as DFT matrix products, the mel filterbank, the
log, the low-pass and YIN's lag products of the pitch track) are fixed computations, not learned ones.
Quantizing them rounds the power spectrum before the log: measured on a bc_resnet run, dynamic quantization
of the DFT products agreed with fp32 on 25 % of the test clips.

The front end is found from the graph's data flow, whichever exporter wrote it: a tensor is learned when it
is one of the model's parameters, or an initializer in the weight slot of a Conv, Gemm or MatMul that is not
one of the model's buffers (the TorchScript exporter folds BatchNorm into convolution weights under new
names); constants computed in ``forward`` (Constant nodes) and buffers are fixed. Every node none of whose
inputs depends on a learned tensor is front end.
"""

from __future__ import annotations

from typing import Any

WEIGHT_SLOTS = {"Conv": (1, 2), "ConvTranspose": (1, 2), "Gemm": (1, 2), "MatMul": (1,)}
QUANTIZABLE = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def front_end_nodes(graph: Any, parameters: set[str], buffers: set[str]) -> list[str]:
    """Names of the nodes of ``graph`` (an onnx GraphProto, as exported) that depend on no learned tensor.
    ``parameters`` and ``buffers``: the model's own names (``model.named_parameters()``), matched with and
    without the export wrapper's ``model.`` prefix."""

    def named(name: str, names: set[str]) -> bool:
        return name in names or name.removeprefix("model.") in names

    inits = {t.name for t in graph.initializer}
    learned = {n for n in inits if named(n, parameters)}
    for node in graph.node:
        for slot in WEIGHT_SLOTS.get(node.op_type, ()):
            if slot < len(node.input) and node.input[slot] in inits and not named(node.input[slot], buffers):
                learned.add(node.input[slot])
    depends = set(learned)
    front = []
    for node in graph.node:  # topological order
        if any(i in depends for i in node.input):
            depends.update(node.output)
        elif node.op_type != "Constant" and node.name:
            front.append(node.name)
    return front


def model_names(model: Any) -> tuple[set[str], set[str]]:
    """(parameter names, buffer names) of a torch module."""
    return {n for n, _ in model.named_parameters()}, {n for n, _ in model.named_buffers()}


def quantizable(graph: Any, names: list[str]) -> list[str]:
    """Those of ``names`` that are nodes a quantizer would turn into integer kernels."""
    wanted = set(names)
    return [n.name for n in graph.node if n.name in wanted and n.op_type in QUANTIZABLE]
