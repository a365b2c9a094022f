"""Gradient-boosted trees (LightGBM) as a danlu model: the same run folder, predictor, server and export.

The booster sits inside an ``nn.Module`` so everything that loads, scores or serves a run treats it like a
net: ``forward`` takes the encoded feature rows and returns logits (classification; the binary margin ``s``
becomes ``[0, s]``, whose softmax is LightGBM's sigmoid) or standardized values (regression, trained on the
standardized target as the nets are), and ``to_predictions`` does the rest. The trained booster is kept in
LightGBM's own text model format, as the bytes of a uint8 buffer in model.safetensors: no pickle, and the
file loads with ``lightgbm.Booster(model_str=...)`` outside danlu too (the run also gets a model.txt copy).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from danlu.errors import DanluError
from danlu.schema import Schema

BOOSTER_KEY = "booster"
# onnxmltools' LightGBM converter writes at most this opset (1.16: "converter support (15)")
ONNX_OPSET = 15
SMALL_TABLE = 20_000  # training rows below which LightGBM runs on one thread (see lightgbm_params)
# training rows from which the auto schedule takes lr 0.1, at most 1000 rounds and no refit: on diamonds (38,837
# rows) lr 0.05 ran 531 rounds, then 584 more for the refit, for +0.0003 R² (benchmarks/RESULTS.md)
LARGE_TABLE = 20_000


class BoostedTrees(nn.Module):
    """A LightGBM booster behind the nets' interface; ``fits_itself`` tells training to call its own fit."""

    fits_itself = True
    # model.safetensors' buffer whose size is the trained model's, not the rebuilt module's (checkpoint.py)
    sized_by_file = (BOOSTER_KEY,)

    def __init__(self, schema: Schema, options: dict[str, Any]):
        super().__init__()
        self.schema, self.options = schema, dict(options)
        self.categorical = list(categorical_columns(schema))
        self.register_buffer(BOOSTER_KEY, torch.zeros(0, dtype=torch.uint8))
        # a zero-size parameter: callers ask next(model.parameters()).device; it never trains
        self.anchor = nn.Parameter(torch.zeros(0), requires_grad=False)
        self._booster: Any = None

    # ------------------------------------------------------------ the booster and its bytes

    def set_booster(self, booster: Any, num_iteration: int | None = None) -> None:
        """Keep ``booster`` (cut at ``num_iteration`` rounds) as the model; its text goes into the buffer."""
        import lightgbm as lgb

        text = float32_thresholds(booster.model_to_string(num_iteration=num_iteration))
        self._booster = lgb.Booster(model_str=text)
        self.booster = torch.frombuffer(bytearray(text.encode("utf-8")), dtype=torch.uint8)

    @property
    def model_text(self) -> str:
        return bytes(self.booster.numpy()).decode("utf-8")

    @property
    def trained(self) -> bool:
        return self._booster is not None

    def _load_from_state_dict(self, state_dict: dict, prefix: str, local_metadata: dict, strict: bool,
                              missing_keys: list, unexpected_keys: list, error_msgs: list) -> None:
        key = prefix + BOOSTER_KEY
        if key not in state_dict:
            missing_keys.append(key)
            return
        import lightgbm as lgb

        raw = state_dict[key]
        try:
            text = bytes(raw.numpy()).decode("utf-8")
            booster = lgb.Booster(model_str=text) if text else None
        except (UnicodeDecodeError, lgb.basic.LightGBMError) as e:
            error_msgs.append(f"the LightGBM model in '{key}' is not readable ({str(e)[:160]})")
            return
        self.booster, self._booster = raw.clone(), booster
        anchor = prefix + "anchor"
        for k in state_dict:
            if k.startswith(prefix) and k not in (key, anchor) and "." not in k[len(prefix):]:
                unexpected_keys.append(k)

    # ------------------------------------------------------------ prediction

    def raw_scores(self, x: np.ndarray, booster: Any = None) -> np.ndarray:
        """The booster's margins [N] or [N, C] (``booster``: an in-training one, for validation rows)."""
        booster = booster if booster is not None else self._booster
        if booster is None:
            raise DanluError("this boosted model has not been trained", hint="train it: danlu train RECIPE")
        if len(x) == 0:
            return np.zeros((0, self.outputs), np.float64)
        threads = 1 if len(x) < SMALL_TABLE else idle_cores()  # as in training
        return np.asarray(booster.predict(x, raw_score=True, num_threads=threads))

    @property
    def outputs(self) -> int:
        return self.schema.num_outputs

    def logits(self, raw: np.ndarray) -> torch.Tensor:
        """Margins → what the nets output: logits [N, C], or standardized values [N, T]."""
        raw = np.asarray(raw, np.float32)
        if self.schema.task == "classification" and self.outputs == 2:
            raw = raw.reshape(-1)
            raw = np.stack([np.zeros_like(raw), raw], 1)
        return torch.from_numpy(raw.reshape(len(raw), -1).copy())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.logits(self.raw_scores(x.detach().float().cpu().numpy()))
        return out.to(x.device)

    # ------------------------------------------------------------ explanations

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """Exact tree SHAP values (LightGBM's pred_contrib), [N, outputs, F + 1], the last column the bias:
        each row sums to the margin. The binary margin belongs to the second class (the first is 0)."""
        if self._booster is None:
            raise DanluError("this boosted model has not been trained")
        threads = 1 if len(x) < SMALL_TABLE else idle_cores()
        contrib = np.asarray(self._booster.predict(x, pred_contrib=True, num_threads=threads))
        f = x.shape[1] + 1
        contrib = contrib.reshape(len(x), -1, f)
        if self.schema.task == "classification" and self.outputs == 2:
            contrib = np.concatenate([np.zeros_like(contrib), contrib], 1)
        return contrib

    # ------------------------------------------------------------ export

    def to_onnx(self, width: int) -> bytes:
        """The booster as ONNX (onnxmltools), its outputs made ``Predictor.forward``'s: probabilities [N, C]
        for classification, the target's own units [N, T] for regression; the input named ``input``."""
        import onnx
        from onnx import helper, numpy_helper
        from onnxmltools import convert_lightgbm
        from onnxmltools.convert.common.data_types import FloatTensorType

        model = convert_lightgbm(self._booster, initial_types=[("input", FloatTensorType([None, width]))],
                                 zipmap=False, target_opset=ONNX_OPSET)
        graph = model.graph
        if self.schema.task == "classification":
            keep = next(o for o in graph.output if o.name == "probabilities")
            for out in [o for o in graph.output if o is not keep]:
                graph.output.remove(out)
        else:  # standardized values → the target's units: v * std + mean, and the name the nets' exports use
            out = graph.output[0]
            std = np.asarray(self.schema.target_std or [1.0], np.float32)
            mean = np.asarray(self.schema.target_mean or [0.0], np.float32)
            graph.initializer.extend([numpy_helper.from_array(std, "target_std"),
                                      numpy_helper.from_array(mean, "target_mean")])
            graph.node.extend([helper.make_node("Mul", [out.name, "target_std"], ["scaled"]),
                               helper.make_node("Add", ["scaled", "target_mean"], ["values"])])
            graph.output.remove(out)
            graph.output.append(helper.make_tensor_value_info("values", onnx.TensorProto.FLOAT, [None, self.outputs]))
        onnx.checker.check_model(model)
        return model.SerializeToString()


def float32_thresholds(text: str) -> str:
    """The model text with every numeric split threshold t moved down to the largest float32 <= t.

    Inputs are float32 rows, so for them ``x <= t`` and ``x <= t'`` agree and predictions are unchanged; but
    ONNX's tree ensembles store thresholds as float32, and a value equal to float32(t) rounded *up* past t
    went the other way there (diabetes-lightgbm: one test row in 88 off by 2.5). Categorical splits
    (decision_type bit 0) keep their thresholds: those index the category lists."""
    lines = text.split("\n")
    found: dict[str, int] = {}
    for i, line in enumerate(lines):
        if line.startswith("Tree="):
            found = {}
        for key in ("threshold=", "decision_type="):
            if line.startswith(key):
                found[key] = i
        if len(found) < 2:
            continue
        kinds = [int(v) for v in lines[found["decision_type="]].split("=", 1)[1].split()]
        values = lines[found["threshold="]].split("=", 1)[1].split()
        out = []
        for v, kind in zip(values, kinds, strict=True):
            t = float(v)
            low = np.float32(t)
            if not kind & 1 and float(low) > t:
                low = np.nextafter(low, np.float32(-np.inf))
            out.append(v if kind & 1 else repr(float(low)))
        lines[found["threshold="]] = "threshold=" + " ".join(out)
        found = {}
    # tree_sizes= gives each tree's byte length for LightGBM's parallel parse; without it, a sequential parse
    return "\n".join(line for line in lines if not line.startswith("tree_sizes="))


def categorical_columns(schema: Schema) -> list[int]:
    """Encoded columns that hold category codes (the column plan's, when the schema has one)."""
    table = getattr(schema, "table", None) or {}
    return [int(j) for j in table.get("code_columns", [])]


def boosting_schedule(options: dict[str, Any], rows: int) -> tuple[int, float, bool]:
    """(round cap, learning rate, refit) from the options, ``auto`` ones chosen from the training rows."""
    large = rows >= LARGE_TABLE
    rounds = options.get("n_estimators", "auto")
    rate = options.get("learning_rate", "auto")
    refit = options.get("refit", "auto")
    return (int((1000 if large else 2000) if rounds == "auto" else rounds),
            float((0.1 if large else 0.05) if rate == "auto" else rate),
            (not large) if refit == "auto" else bool(refit))


def lightgbm_params(schema: Schema, options: dict[str, Any], seed: int, threads: int | None,
                    rows: int = 0) -> dict[str, Any]:
    """LightGBM's parameters for this task and the recipe's model options."""
    if schema.task == "classification":
        k = schema.num_outputs
        params: dict[str, Any] = {"objective": "binary"} if k == 2 else {"objective": "multiclass", "num_class": k}
    else:
        params = {"objective": "regression"}
    params.update(learning_rate=boosting_schedule(options, rows)[1], num_leaves=options["num_leaves"],
                  max_depth=options["max_depth"], min_child_samples=options["min_child_samples"],
                  feature_fraction=options["feature_fraction"], bagging_fraction=options["bagging_fraction"],
                  bagging_freq=options["bagging_freq"], lambda_l2=options["lambda_l2"],
                  min_split_gain=options["min_split_gain"], max_bin=options["max_bin"],
                  cat_smooth=options["cat_smooth"], seed=seed, deterministic=True, force_col_wise=True,
                  verbosity=-1)
    # train.threads, else one thread for a small table: OpenMP's spin-waiting threads cost more than they
    # share out there (penguins, 248 rows, 100 rounds on a busy 2-core machine: 4.9 s with 2 threads, 0.35 s with 1);
    # a big one gets the cores other work leaves idle: on that machine at load 12, diamonds' 150 rounds took
    # 66-119 s on 2 threads and 3-4 s on 1 (most of danlu's 430 s against LightGBM's 19 s in benchmarks/tables.py)
    params["num_threads"] = threads or (1 if rows < SMALL_TABLE else idle_cores())
    return params


def idle_cores() -> int:
    """The CPU cores this process may use that the 1-minute load average leaves idle (at least 1)."""
    import os

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except OSError:
        return cores
    return max(1, min(cores, int(cores - load + 0.5)))
