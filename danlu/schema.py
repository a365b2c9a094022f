"""What a model and a predictor need to know about the data, saved as schema.json in every run.

Shapes, classes and normalization statistics come from here, so no layer size is ever written by hand
and a run folder alone is enough to preprocess new inputs exactly as in training.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

Kind = Literal["image", "tabular", "text"]
Task = Literal["classification", "regression"]


@dataclass
class Schema:
    kind: Kind
    task: Task
    input_shape: list[int]  # image: [C, H, W]; tabular: [F]; text: [max_len]
    classes: list[str] | None = None  # classification label names, index = class id
    targets: list[str] | None = None  # regression target names
    mean: list[float] | None = None  # per channel (image) or per feature (tabular)
    std: list[float] | None = None
    target_mean: list[float] | None = None  # regression targets are standardized for training
    target_std: list[float] | None = None
    features: list[str] | None = None  # tabular column names, in model input order
    categories: dict[str, list[str]] = field(default_factory=dict)  # tabular one-hot columns
    text: dict[str, Any] = field(default_factory=dict)  # tokenizer name, pad_id, vocab size, max_len
    source: str = ""  # dataset name, for the model card

    @property
    def num_outputs(self) -> int:
        if self.task == "classification":
            return len(self.classes or [])
        return len(self.targets or [1])

    @property
    def is_binary(self) -> bool:
        return self.task == "classification" and self.num_outputs == 2

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Schema:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    @classmethod
    def load(cls, path: Path) -> Schema:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
