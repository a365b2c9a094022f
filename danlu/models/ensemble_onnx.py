"""Several ONNX models that read the same ``input`` → one graph whose output is their weighted sum.

Each member's names get a prefix (``m0_``, ``m1_``: onnx.compose.add_prefix), its own input is fed from the
shared ``input`` by an Identity, and Mul + Sum nodes blend the outputs. The opset of each domain is the
highest any member asks for (the members' default-domain ops are the same from opset 15 to 17).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from danlu.schema import Schema


def combine(models: list[Any], weights: list[float], schema: Schema, width: int) -> bytes:
    import onnx
    from onnx import TensorProto, compose, helper, numpy_helper

    nodes, inits, outs = [], [], []
    opsets: dict[str, int] = {}
    for i, model in enumerate(models):
        prefixed = compose.add_prefix(model, f"m{i}_")
        g = prefixed.graph
        (member_input,) = [x.name for x in g.input if x.name not in {t.name for t in g.initializer}]
        nodes.append(helper.make_node("Identity", ["input"], [member_input], name=f"m{i}_feed"))
        nodes.extend(g.node)
        inits.extend(g.initializer)
        out = g.output[0].name
        weight = f"m{i}_blend_weight"
        inits.append(numpy_helper.from_array(np.asarray([weights[i]], np.float32), weight))
        nodes.append(helper.make_node("Mul", [out, weight], [f"m{i}_weighted"], name=f"m{i}_weigh"))
        outs.append(f"m{i}_weighted")
        for op in model.opset_import:
            opsets[op.domain] = max(opsets.get(op.domain, 0), op.version)
    name = "probabilities" if schema.task == "classification" else "values"
    nodes.append(helper.make_node("Sum", outs, [name], name="blend"))
    graph = helper.make_graph(nodes, "danlu_table_ensemble",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, width])],
                              [helper.make_tensor_value_info(name, TensorProto.FLOAT, [None, schema.num_outputs])],
                              initializer=inits)
    merged = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()])
    merged.ir_version = max(m.ir_version for m in models)
    onnx.checker.check_model(merged)
    return merged.SerializeToString()
