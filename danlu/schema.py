"""What a model and a predictor need to know about the data, saved as schema.json in every run.

Shapes, classes and normalization statistics come from here, so no layer size is ever written by hand
and a run folder alone is enough to preprocess new inputs exactly as in training. A schema.json read
back from disk is validated (``from_dict``, called by danlu.runs.folder.load_schema): a damaged or
hand-edited one is a RunError naming the file and the key, never a crash deep inside the model or the normalizer.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError, model_validator

from danlu.errors import RunError

Kind = Literal["image", "tabular", "text", "audio"]
Task = Literal["classification", "regression"]
MAX_SIDE = 1 << 16  # no input dimension of a real run comes near this; a bigger one is a damaged file


@dataclass
class Schema:
    kind: Kind
    task: Task
    input_shape: list[int]  # image: [C, H, W]; tabular: [F]; text: [max_len]; audio: [samples]
    classes: list[str] | None = None  # classification label names, index = class id
    targets: list[str] | None = None  # regression target names
    mean: list[float] | None = None  # per channel (image) or per feature (tabular)
    std: list[float] | None = None
    target_mean: list[float] | None = None  # regression targets are standardized for training
    target_std: list[float] | None = None
    features: list[str] | None = None  # tabular column names, in model input order
    categories: dict[str, list[str]] = field(default_factory=dict)  # tabular one-hot columns
    text: dict[str, Any] = field(default_factory=dict)  # tokenizer name, pad_id, vocab size, max_len
    table: dict[str, Any] = field(default_factory=dict)  # tabular column plan (danlu/data/columns.py); {} = one-hot
    audio: dict[str, Any] = field(default_factory=dict)  # sample_rate, seconds, fit, samples (danlu/data/audio.py)
    source: str = ""  # dataset name, for the model card

    @property
    def num_outputs(self) -> int:
        if self.task == "classification":
            return len(self.classes or [])
        return len(self.targets or [1])

    def non_numeric_columns(self) -> set[str]:
        """Table columns that take text (categories, dates, free text; IDs and constants, unused): the one-hot
        encoder's categories, or the column plan's columns not read as numbers."""
        if self.table:
            return {c["name"] for c in self.table.get("columns", []) if c.get("kind") != "numeric"}
        return set(self.categories)

    @property
    def is_binary(self) -> bool:
        return self.task == "classification" and self.num_outputs == 2

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False)

    @classmethod
    def from_dict(cls, d: Any, source: str | Path = "schema.json") -> Schema:
        """A validated Schema; a damaged ``d`` is a RunError that names ``source`` and the key."""
        if not isinstance(d, dict):
            raise _damaged(source, f"expected a JSON object, got {type(d).__name__}")
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        try:
            checked = SchemaFile.model_validate(known)
        except ValidationError as e:
            first = e.errors()[0]
            key = ".".join(str(x) for x in first["loc"]) or "(top level)"
            got = first.get("input")
            shown = "" if isinstance(got, dict) or first["type"] == "missing" else f" (got {_short(got)})"
            more = f" (and {e.error_count() - 1} more problem(s))" if e.error_count() > 1 else ""
            raise _damaged(source, f"{key}: {first['msg']}{shown}{more}") from None
        return cls(**checked.model_dump())



def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _damaged(source: str | Path, what: str) -> RunError:
    return RunError(f"{source} is damaged: {what}", hint="restore it from a copy, or train the run again")


Side = Annotated[int, Field(strict=True, ge=1, le=MAX_SIDE)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
Positive = Annotated[float, Field(gt=1e-12, allow_inf_nan=False)]  # a divisor: 0 or 1e-40 make inf


class SchemaFile(BaseModel):
    """schema.json as it must be on disk: types, ranges, and the lengths that must agree with each other."""

    model_config = ConfigDict(extra="ignore", strict=False)

    kind: Kind
    task: Task
    input_shape: list[Side]
    classes: list[StrictStr] | None = None
    targets: list[StrictStr] | None = None
    mean: list[Finite] | None = None
    std: list[Positive] | None = None
    target_mean: list[Finite] | None = None
    target_std: list[Positive] | None = None
    features: list[StrictStr] | None = None
    categories: dict[str, list[StrictStr]] = {}
    text: dict[str, Any] = {}
    table: dict[str, Any] = {}
    audio: dict[str, Any] = {}
    source: StrictStr = ""

    @model_validator(mode="after")
    def _consistent(self) -> SchemaFile:
        want = 3 if self.kind == "image" else 1
        if len(self.input_shape) != want:
            raise ValueError(f"input_shape of {self.kind} data has {want} dimension(s), got {self.input_shape}")
        if self.task == "classification":
            if not self.classes or len(self.classes) < 2:
                raise ValueError("classification needs a 'classes' list of at least two names")
            if len(set(self.classes)) != len(self.classes):
                raise ValueError("'classes' names a class twice")
        elif self.targets is not None and not self.targets:
            raise ValueError("'targets' is empty")
        if self.mean is not None or self.std is not None:
            width = self.input_shape[0]  # image: channels; tabular: encoded columns
            for name, values in (("mean", self.mean), ("std", self.std)):
                if values is None or len(values) not in ((1, width) if self.kind == "image" else (width,)):
                    raise ValueError(f"'{name}' has {len(values or [])} value(s), the input has {width} "
                                     f"{'channel' if self.kind == 'image' else 'column'}(s)")
            if len(self.mean or []) != len(self.std or []):
                raise ValueError("'mean' and 'std' differ in length")
        if self.task == "regression":
            n = len(self.targets or [1])
            for name in ("target_mean", "target_std"):
                values = getattr(self, name)
                if values is not None and len(values) != n:
                    raise ValueError(f"'{name}' has {len(values)} value(s) for {n} target(s)")
        if self.kind == "tabular":
            self._check_tabular()
        if self.kind == "text":
            self._check_text()
        if self.kind == "audio":
            self._check_audio()
        return self

    def _check_audio(self) -> None:
        a = self.audio
        rate, seconds = a.get("sample_rate"), a.get("seconds")
        if not _is_int(rate) or not 1000 <= rate <= 192_000:
            raise ValueError(f"audio.sample_rate must be a whole number of Hz from 1000 to 192000 (got {_short(rate)})")
        if not isinstance(seconds, int | float) or isinstance(seconds, bool) or not 0 < seconds <= 600:
            raise ValueError(f"audio.seconds must be a number of seconds in (0, 600] (got {_short(seconds)})")
        if a.get("fit", "center") not in ("center", "start"):
            raise ValueError(f"audio.fit is center or start (got {_short(a.get('fit'))})")
        if self.input_shape[0] != max(1, round(rate * seconds)):
            raise ValueError(f"input_shape {self.input_shape} is not audio.sample_rate x audio.seconds samples")

    def _check_tabular(self) -> None:
        features = self.features or []
        if len(set(features)) != len(features):
            raise ValueError("'features' names a column twice")
        if self.table:
            self._check_plan(features)
            return
        unknown = [c for c in self.categories if c not in set(features)]
        if unknown:
            raise ValueError(f"'categories' has column {unknown[0]!r}, which is not in 'features'")
        width = sum(len(self.categories.get(f, ())) or 1 for f in features)
        if width != self.input_shape[0]:
            raise ValueError(f"'features' and 'categories' make {width} input columns, input_shape says "
                             f"{self.input_shape[0]}")

    def _check_plan(self, features: list[str]) -> None:
        t = self.table
        inputs, codes, cards = t.get("inputs"), t.get("code_columns"), t.get("cardinalities")
        if not isinstance(inputs, list) or len(inputs) != self.input_shape[0]:
            raise ValueError(f"table.inputs names {len(inputs) if isinstance(inputs, list) else 'no'} input columns, "
                             f"input_shape says {self.input_shape[0]}")
        if t.get("features") != features:
            raise ValueError("table.features differs from 'features'")
        if not isinstance(codes, list) or not isinstance(cards, list) or len(codes) != len(cards) or not all(
                _is_int(j) and 0 <= j < len(inputs) for j in codes) or not all(_is_int(c) and c >= 2 for c in cards):
            raise ValueError("table.code_columns and table.cardinalities must be matching lists of column indexes "
                             "and category counts")
        if not isinstance(t.get("columns"), list):
            raise ValueError("table.columns must list the column specs")

    def _check_text(self) -> None:
        t = self.text
        tokenizer = t.get("tokenizer")
        if not isinstance(tokenizer, str) or not tokenizer:
            raise ValueError("text.tokenizer must name the run's tokenizer")
        max_len = t.get("max_len")
        if not _is_int(max_len) or not 1 <= max_len <= MAX_SIDE:
            raise ValueError(f"text.max_len must be a whole number from 1 to {MAX_SIDE} (got {_short(max_len)})")
        if tokenizer == "pretrained":
            return
        vocab, pad = t.get("vocab_size"), t.get("pad_id", 0)
        if not _is_int(vocab) or vocab < 2:
            raise ValueError(f"text.vocab_size must be a whole number of at least 2 (got {_short(vocab)})")
        if not _is_int(pad) or not 0 <= pad < vocab:
            raise ValueError(f"text.pad_id must be a token id below vocab_size {vocab} (got {_short(pad)})")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)
