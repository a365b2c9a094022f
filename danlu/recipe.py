"""The recipe: one validated, immutable description of a training job.

A recipe is a YAML file (or a built-in name) plus dotted ``key=value`` overrides. It is validated
once here, with errors that give the file, line and key path, and saved fully resolved in the run.
Nothing in this module imports torch, so ``danlu --help`` stays fast.
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from danlu import safe_yaml
from danlu.errors import DanluError, RecipeError, did_you_mean, unknown_name
from danlu.recipe_recommend import RecommendConfig

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULES = ("none", "step", "cosine", "linear", "onecycle")
DATASETS = (
    "digits", "iris", "breast_cancer", "diabetes", "wine",
    "mnist", "fashion-mnist", "cifar10", "imagefolder", "csv", "text", "chnsenticorp", "sst2",
    "audiofolder", "mandarin-tones",
    "movielens", "interactions",  # user-item tables: the recommend block (danlu/recipe_recommend.py)
)
DATASET_ALIASES = {"breast-cancer": "breast_cancer", "fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist",
                   "cifar-10": "cifar10", "sst-2": "sst2", "image_folder": "imagefolder", "images": "imagefolder",
                   "tabular": "csv", "audio_folder": "audiofolder", "audio": "audiofolder",
                   "mandarin_tones": "mandarin-tones"}


class InvalidValue(ValueError):
    """A DanluError raised inside a validator: pydantic then reports it with its key path, and the
    recipe loader adds the file and line (a plain DanluError would escape without them). ``at`` is a
    deeper key path than pydantic's, for the line number (a key inside the ``tune`` block)."""

    def __init__(self, error: DanluError, at: tuple = ()):
        super().__init__(error.message)
        self.message, self.hint, self.at = error.message, error.hint, at


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=(), allow_inf_nan=False)


class AugmentConfig(_Strict):
    """Random geometric augmentation, applied to whole batches on the training split only."""

    flip: bool = False  # random horizontal flip
    rotate: float = Field(0.0, ge=0, le=180)  # max rotation in degrees, either way
    translate: float = Field(0.0, ge=0, le=0.5)  # max shift as a fraction of the image size
    scale: tuple[float, float] = (1.0, 1.0)  # zoom range; (0.8, 1.0) crops up to 20 % away
    # shift by up to N whole pixels (reflect-filled), with the flip, on the uint8 batch: exact and cheap
    # (danlu/data/batch_augment.py); 0 keeps the affine path above for everything
    shift: int = Field(0, ge=0, le=16)

    @property
    def active(self) -> bool:
        return self.affine or self.shift > 0

    @property
    def affine(self) -> bool:
        """Whether the interpolating affine path has work: the flip moves to the pixel path with shift."""
        return ((self.flip and self.shift == 0) or self.rotate > 0 or self.translate > 0
                or tuple(self.scale) != (1.0, 1.0))


class DataConfig(_Strict):
    """Where the data comes from and how it is split, resized, augmented, tokenized and loaded."""

    name: str = "digits"  # a dataset name (DATASETS above; aliases such as breast-cancer are accepted)
    root: Path | None = None  # the dataset's own folder
    path: Path | None = None  # a single data file (CSV, TSV, JSONL)
    train: Path | None = None  # separate split files (text and tabular)
    val: Path | None = None  # a separate validation file
    test: Path | None = None  # a separate test file
    download: bool = False  # fetch missing public datasets (needs internet)
    image_size: int | None = Field(None, ge=8, le=1024)  # square side; None = the dataset's native size
    channels: Literal[1, 3] | None = None  # None = what the data has (image folders: 3)
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)  # carved from training, stratified and seeded, when no val split
    test_fraction: float = Field(0.2, ge=0.0, lt=1.0)  # used only when the data has no test split
    augment: AugmentConfig = AugmentConfig()
    loader: Literal["auto", "memory", "stream"] = "auto"  # memory = decoded uint8 tensors; stream = DataLoader
    max_memory_mb: int = Field(4096, ge=1)  # above this, auto uses the streaming loader
    limit_train: int | None = Field(None, ge=1)  # cap on training samples (quick experiments)
    # images: standardize each channel with the training split's mean and std; false keeps pixels in [0, 1]
    # (as Tramèr & Boneh train their DP CNN: mnist-cnn-dp)
    normalize: bool = True
    # tabular
    features: list[str] | None = None  # feature columns; None = every column but the target
    exclude: list[str] | None = None  # columns to leave out (of data.features, or of every column)
    check_leaks: bool = True  # refuse a feature that equals the target or predicts it perfectly in training
    target: str | None = None  # target column; None = the last column
    task: Literal["auto", "classification", "regression"] = "auto"  # auto: from the target column's values
    # text
    text_column: str | int = "auto"  # a name or 0-based index; auto: text, sentence, review, ...
    label_column: str | int = "auto"  # a name or 0-based index; auto: label, target, ...
    tokenizer: str = "auto"  # char | word | jieba | pretrained | auto
    max_len: int | None = Field(None, ge=1)  # None = a length percentile of the training texts
    min_freq: int = Field(1, ge=1)  # tokens seen fewer times in training become unknown
    max_vocab: int | None = Field(None, ge=10)  # keep the most frequent tokens; None = all
    # audio (danlu/data/audio.py): every clip decoded to mono at sample_rate, cropped or zero-padded to seconds
    sample_rate: int | None = Field(None, ge=1000, le=192_000)  # None = 16 kHz
    seconds: float | None = Field(None, gt=0, le=600)  # None = 1 s (mandarin-tones: 0.64 s)
    fit: Literal["center", "start"] = "center"  # where a short clip sits in the padding / a long one is cut
    split: Literal["syllable", "speaker"] | None = None  # mandarin-tones: hold out syllables or a speaker
    speaker: str | None = None  # mandarin-tones with split=speaker: the training speaker (3 or 5)
    neutral: Literal["class", "drop"] = "drop"  # mandarin-tones: the neutral tone as a fifth class, or dropped
    # mandarin-tones with split=speaker: hand the model the test speaker's clips WITHOUT labels, so tone_net
    # (pitch_norm=voice) measures that voice's pitch centre and spread (transductive; docs/audio.md)
    adapt: bool = False

    @field_validator("speaker", mode="before")
    @classmethod
    def _speaker_name(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v  # data.speaker=3 names speaker "3"

    @field_validator("tokenizer")
    @classmethod
    def _one_spelling(cls, v: str) -> str:
        return v.strip().lower()  # "WORD" and "word" are one tokenizer, in recipe.yaml and schema.json too

    @field_validator("name")
    @classmethod
    def _known_dataset(cls, v: str) -> str:
        v = DATASET_ALIASES.get(v.lower(), v.lower())
        if v not in DATASETS:
            raise InvalidValue(unknown_name("dataset", v, DATASETS))
        return v

    @model_validator(mode="after")
    def _fractions(self) -> DataConfig:
        if self.val_fraction + self.test_fraction >= 0.95:
            raise ValueError("val_fraction + test_fraction must leave some data for training (< 0.95)")
        return self


class EarlyStopConfig(_Strict):
    """train.early_stop: stop when the metric has not improved for ``patience`` epochs."""

    metric: str = "auto"  # val_loss, val_accuracy, val_f1_macro, val_r2, ... ; auto = the monitor
    patience: int = Field(5, ge=1)  # epochs without improvement before stopping
    min_delta: float = Field(0.0, ge=0.0)  # the least change that counts as an improvement


class LookaheadConfig(_Strict):
    """train.lookahead: pull the weights back to a slow average every few steps (danlu/training/lookahead.py)."""

    every: int = Field(5, ge=1)  # steps between pulls (each epoch also ends on one)
    alpha: float = Field(0.77, ge=0, lt=1)  # the slow weights' share at a pull at the end of training
    ramp: float = Field(3.0, ge=0)  # the share grows as alpha·(step/total)^ramp; 0: alpha throughout


ACCOUNTANTS = ("rdp", "prv")


class PrivacyConfig(_Strict):
    """DP-SGD (danlu/training/privacy.py): a target ``epsilon`` (the noise is calibrated to reach it at the last step)
    or a fixed ``noise_multiplier``; ``delta: auto`` is 1/(10·N) for N training samples."""

    epsilon: float | None = Field(None, gt=0)  # the privacy budget to reach at the last step (or noise_multiplier)
    noise_multiplier: float | None = Field(None, ge=0)  # a fixed noise sigma; the epsilon it reaches is reported
    delta: Literal["auto"] | float = "auto"  # auto = 1/(10·N) for N training samples; else below 1/N
    max_grad_norm: float = Field(1.0, gt=0)  # per-sample clipping norm C
    accountant: str = "rdp"  # rdp (Rényi DP, Mironov 2017) | prv (privacy random variables, tighter)

    @field_validator("delta")
    @classmethod
    def _delta_range(cls, v: Any) -> Any:
        if v != "auto" and not 0 < v < 1:
            raise InvalidValue(RecipeError(f"delta must be in (0, 1), got {v:g}",
                                           hint="delta: auto gives 1/(10·N) for N training samples"))
        return v

    @field_validator("accountant")
    @classmethod
    def _known_accountant(cls, v: str) -> str:
        if v.lower() not in ACCOUNTANTS:
            raise InvalidValue(unknown_name("accountant", v, ACCOUNTANTS))
        return v.lower()

    @model_validator(mode="after")
    def _one_budget(self) -> PrivacyConfig:
        if (self.epsilon is None) == (self.noise_multiplier is None):
            raise InvalidValue(RecipeError(
                "give exactly one of epsilon and noise_multiplier",
                hint="epsilon: 3.0 calibrates the noise to that budget; noise_multiplier: 1.1 fixes the noise "
                     "and reports the epsilon it reaches"))
        return self

class DistillConfig(_Strict):
    """Knowledge distillation (danlu/training/distill.py): the loss mixes a teacher run's softened outputs with
    the labels, ``alpha`` × T² × KL(teacher_T ‖ student_T) + (1 - alpha) × the plain loss."""

    teacher: str  # a run folder, or a run name as ``danlu runs`` shows it (the newest run containing it)
    temperature: float = Field(4.0, gt=0)  # T: softens both outputs before the KL term
    alpha: float = Field(0.7, ge=0, le=1)  # weight of the teacher's term; 1 - alpha goes to the labels' loss


class TrainConfig(_Strict):
    """How the model is trained: optimizer, schedule, regularization, devices and the optional extras."""

    epochs: int | float = Field(10, gt=0, allow_inf_nan=False)  # 1.5 = one pass, then half of a second
    batch_size: int = Field(128, ge=1)  # the global batch, however many processes train
    eval_batch_size: int = Field(1024, ge=1)  # batch for validation, test and prediction
    lr: float = Field(1e-3, gt=0)  # peak learning rate
    optimizer: str = "adam"  # sgd | adam | adamw | rmsprop
    momentum: float = Field(0.9, ge=0, lt=1)  # sgd and rmsprop
    nesterov: bool = False  # Nesterov momentum (sgd)
    weight_decay: float = Field(0.0, ge=0)  # L2 penalty (adam, sgd, rmsprop) or decoupled decay (adamw)
    schedule: str = "none"  # none | step | cosine | linear | onecycle
    warmup_epochs: float = Field(0.0, ge=0)  # linear warmup at the start of step/cosine schedules
    step_epochs: int = Field(10, ge=1)  # step schedule: decay every N epochs
    gamma: float = Field(0.1, gt=0, le=1)  # step schedule: decay factor
    min_lr_ratio: float = Field(0.0, ge=0, le=1)  # cosine: final lr as a fraction of lr
    # lr multiplier for the shifts (biases) of BatchNorm/GroupNorm layers: with frozen BN scales and scaled-down
    # logits (the airbench nets) the shifts barely move at the weights' lr; airbench trains them 64x faster
    norm_bias_lr_scale: float = Field(1.0, gt=0, allow_inf_nan=False)
    label_smoothing: float = Field(0.0, ge=0, lt=1)  # share of the target spread over all classes
    grad_clip: float | None = Field(None, gt=0)  # max global gradient norm
    monitor: str = "auto"  # metric that picks the best checkpoint; auto = val_accuracy or val_loss
    early_stop: EarlyStopConfig | None = None  # off unless given
    distill: DistillConfig | None = None  # off unless given
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    # mixed precision: true = autocast on CUDA only; bf16 = also the training step in bf16 on a CPU with native
    # bf16 (AVX512-BF16/AMX; 2x faster for conv nets there), fp32 on other CPUs; evaluation on a CPU stays fp32
    amp: bool | Literal["bf16"] = True
    threads: int | None = Field(None, ge=1, le=512)  # torch intra-op threads (None: its default; 2000 broke libgomp)
    channels_last: bool = True  # memory format for conv nets (faster on CPU and GPU)
    # torch.compile the training forward: auto = on CUDA only (on a CPU the compile takes minutes and
    # a small net's step gains little); off keeps eager mode everywhere
    compile: Literal["off", "auto", "on"] = "off"
    track: list[str] = Field(default_factory=list)  # tracking outlets: tensorboard, mlflow (danlu/training/tracking.py)
    track_every_steps: int = Field(0, ge=0)  # also log the batch loss every N steps (0: per epoch only)
    privacy: PrivacyConfig | None = None  # differentially private training (DP-SGD); off by default
    lookahead: LookaheadConfig | None = None  # slow-weight averaging every few steps; off by default

    @field_validator("amp", mode="before")
    @classmethod
    def _amp_choices(cls, v: object) -> object:
        if isinstance(v, str) and v.lower() not in ("bf16", "true", "false", "yes", "no", "on", "off", "1", "0"):
            raise ValueError("train.amp is true, false or bf16")
        return v

    @model_validator(mode="after")
    def _private_compatible(self) -> TrainConfig:
        if self.privacy is not None and self.grad_clip:
            raise InvalidValue(RecipeError(
                "train.grad_clip clips the batch's gradient, which DP-SGD replaces by per-sample clipping",
                hint="drop train.grad_clip (train.grad_clip=null) and set train.privacy.max_grad_norm instead"))
        return self

    @field_validator("track")
    @classmethod
    def _known_outlets(cls, v: list[str]) -> list[str]:
        outlets = ("tensorboard", "mlflow")  # danlu.training.tracking.OUTLETS (not imported: it pulls in the callbacks)
        for name in v:
            if name.lower() not in outlets:
                raise InvalidValue(unknown_name("tracking outlet", name, outlets))
        return list(dict.fromkeys(n.lower() for n in v))

    @field_validator("optimizer")
    @classmethod
    def _known_optimizer(cls, v: str) -> str:
        if v.lower() not in OPTIMIZERS:
            raise InvalidValue(unknown_name("optimizer", v, OPTIMIZERS))
        return v.lower()

    @field_validator("schedule")
    @classmethod
    def _known_schedule(cls, v: str) -> str:
        if v.lower() not in SCHEDULES:
            raise InvalidValue(unknown_name("schedule", v, SCHEDULES))
        return v.lower()

    @property
    def epoch_count(self) -> int:
        """Epochs that run, the last one partial when ``epochs`` has a fraction."""
        return math.ceil(self.epochs)

    def total_steps(self, steps_per_epoch: int) -> int:
        return max(1, round(self.epochs * steps_per_epoch))


class ModelConfig(_Strict):
    """A model name plus that model's own options (validated by its registry entry)."""

    name: str = "mlp"  # a model of the registry (danlu models; the Models section below the keys)
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _split_options(cls, raw: Any) -> Any:
        # YAML writes options flat beside the name: {name: mlp, hidden: [128]}.
        if isinstance(raw, dict) and "options" not in raw:
            raw = dict(raw)
            name = raw.pop("name", "mlp")
            return {"name": name, "options": raw}
        return raw

    @model_validator(mode="after")
    def _validate_options(self) -> ModelConfig:
        from danlu.models.specs import validate_options

        try:
            object.__setattr__(self, "options", validate_options(self.name, self.options))
        except DanluError as e:  # an unknown model name or option
            raise InvalidValue(e) from None
        return self

    def flat(self) -> dict[str, Any]:
        return {"name": self.name, **self.options}


class TuneParam(_Strict):
    """One dimension of a search: ``{low, high[, log][, step]}`` or ``{choices: [...]}``."""

    low: int | float | None = None  # ints stay ints: an int range samples integers
    high: int | float | None = None  # the range's upper end (included)
    log: bool = False  # sample on a log scale (low > 0)
    step: int | float | None = Field(None, gt=0)  # sample on a grid of this spacing from low
    choices: list[Any] | None = None  # a list of values instead of a range (grid search needs these)

    @model_validator(mode="after")
    def _one_kind(self) -> TuneParam:
        if self.choices is not None:
            if self.low is not None or self.high is not None:
                raise ValueError("give either choices or low/high, not both")
            if not self.choices:
                raise ValueError("choices is empty: give at least one value")
            return self
        if self.low is None or self.high is None:
            raise ValueError("a search dimension needs low and high (a range) or choices (a list)")
        if self.low > self.high:
            raise ValueError(f"low ({self.low:g}) is above high ({self.high:g})")
        if self.log and self.low <= 0:
            raise ValueError(f"log: true needs low > 0 (got {self.low:g}); a log scale has no zero")
        if self.log and self.step is not None:
            raise ValueError("log and step do not mix: drop one")
        return self

    @property
    def is_int(self) -> bool:
        """An integer range: int bounds (and step), as for batch sizes or layer widths."""
        return self.choices is None and all(isinstance(v, int) for v in (self.low, self.high, self.step or 1))

    def values(self) -> list[Any]:
        """Values to check a key path with (every choice, or both ends of the range)."""
        if self.choices is not None:
            return list(self.choices)
        ends = [self.low, self.high]
        return ends


class Recipe(_Strict):
    name: str = "custom"  # names the run folder: runs/<time>-<name>/
    description: str = ""  # what the recipe reproduces (danlu recipes lists it)
    seed: int = Field(0, ge=0, lt=2**32)  # what numpy's and torch's generators accept
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    tune: dict[str, TuneParam] | None = None  # search space for `danlu tune`, keyed by dotted recipe paths
    recommend: RecommendConfig | None = None  # recommendation data and protocol (movielens, interactions)

    @model_validator(mode="after")
    def _tune_paths(self) -> Recipe:
        """Every key of the search space is a recipe path that takes each of its values."""
        if not self.tune:
            return self
        base = self.to_dict()
        base.pop("tune", None)
        for key, param in self.tune.items():
            keys = key.split(".")
            if keys[0] == "tune" or not all(keys):
                raise InvalidValue(RecipeError(f"tune.{key}: not a recipe key path"), at=("tune", key))
            for value in param.values():
                problem = _refusal(base, keys, value)
                if problem:
                    raise InvalidValue(RecipeError(f"tune.{key}: {problem[0]}", hint=problem[1]), at=("tune", key))
        return self

    def without_tune(self) -> Recipe:
        return self.model_copy(update={"tune": None})

    def to_dict(self) -> dict[str, Any]:
        d = self.model_dump(mode="json", exclude_none=False)
        d["model"] = self.model.flat()
        if self.train.distill is None:  # recipes without distillation read as they did before it existed
            d["train"].pop("distill", None)
        if self.recommend is None:  # recipes of other tasks read as they did before it existed
            d.pop("recommend", None)
        if self.tune is None:
            d.pop("tune", None)
        else:  # as written: {low, high, log} or {choices}
            d["tune"] = {k: p.model_dump(mode="json", exclude_defaults=True) for k, p in self.tune.items()}
        return d

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    def with_absolute_paths(self) -> Recipe:
        """Data paths that exist relative to the working folder, made absolute: a run trained in one folder
        can then be evaluated or exported from any other (names looked up under DANLU_DATA stay as they are)."""
        update = {}
        for key in ("root", "path", "train", "val", "test"):
            value = getattr(self.data, key)
            if value is not None and not value.is_absolute() and value.exists():
                update[key] = value.resolve()
        return self.model_copy(update={"data": self.data.model_copy(update=update)}) if update else self


# ---------------------------------------------------------------- loading


def builtin_recipes() -> dict[str, str]:
    """Built-in recipe name → its first comment line (what it reproduces)."""
    out = {}
    for entry in sorted(resources.files("danlu.recipes").iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".yaml"):
            first = entry.read_text(encoding="utf-8").splitlines()[0]
            out[entry.name[:-5]] = first.lstrip("# ").strip()
    return out


def _recipe_source(name_or_path: str) -> tuple[str, str]:
    """Return (yaml text, where it came from) for a built-in name or a file path."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise RecipeError(f"recipe file not found: {p}",
                              hint="give a built-in recipe name (danlu recipes) or a YAML path")
        try:
            return p.read_text(encoding="utf-8"), str(p)
        except UnicodeDecodeError as e:
            raise RecipeError(f"{p} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    names = builtin_recipes()
    if name_or_path not in names and (p.suffix or len(p.parts) > 1):  # a data path that is not there
        raise RecipeError(f"{p} does not exist (looked in {Path.cwd()}), and no recipe has that name",
                          hint="give an existing file or folder (danlu train PATH picks a recipe from the data), "
                               "or a recipe name: danlu recipes lists them")
    if name_or_path not in names:
        raise unknown_name("recipe", name_or_path, names)
    text = resources.files("danlu.recipes").joinpath(f"{name_or_path}.yaml").read_text(encoding="utf-8")
    return text, f"built-in recipe {name_or_path}"


def _line_index(text: str) -> dict[tuple, int]:
    """Map each key path in a YAML document to its 1-based line number, for error messages."""
    index: dict[tuple, int] = {}

    def walk(node: Any, path: tuple) -> None:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = (*path, k.value)
                index[key] = k.start_mark.line + 1
                walk(v, key)
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                index[(*path, i)] = v.start_mark.line + 1
                walk(v, (*path, i))

    try:
        walk(safe_yaml.compose(text), ())
    except yaml.YAMLError:
        pass
    return index


def parse_override(item: str) -> tuple[list[str], Any]:
    """``train.epochs=3`` → (['train', 'epochs'], 3); the value is read as YAML (lists, numbers, null)."""
    if "=" not in item:
        raise RecipeError(f"override '{item}' is not key=value", hint="e.g. train.epochs=3 or model.hidden=[256,128]")
    key, _, raw = item.partition("=")
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise RecipeError(f"override '{item}' has an empty key", hint="e.g. train.lr=0.01")
    try:
        value = safe_yaml.load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw  # an unparseable value stays a string; validation says if that is wrong
    return key.split("."), value


def _set_path(d: dict, keys: list[str], value: Any, item: str) -> None:
    for k in keys[:-1]:
        nxt = d.get(k)
        if nxt is None:
            nxt = d[k] = {}
        if not isinstance(nxt, dict):
            raise RecipeError(f"override '{item}': '{k}' is a value, not a section")
        d = nxt
    d[keys[-1]] = value


def _fields_at(loc: tuple) -> list[str]:
    """Valid keys of the recipe section at ``loc`` (for 'unknown key' errors)."""
    model: Any = Recipe
    for part in loc:
        if part == "options":
            return []
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            return []
        ann = field.annotation
        model = next((a for a in getattr(ann, "__args__", (ann,)) if isinstance(a, type) and issubclass(a, BaseModel)),
                     None)
        if model is None or model is ModelConfig:
            return []
    return list(model.model_fields) if model else []


_TYPE_TAGS = {"int", "float", "str", "bool", "list", "dict", "tuple", "literal", "none"}


def _merge_unions(errors: list[dict]) -> list[dict]:
    """One error per value that no member of a union (``int | float``) took, at the field's own path.

    pydantic reports one error per member (``train.epochs.int``, ``train.epochs.float``); a member that
    parsed the value but refused it says more ("should be a finite number") than a type mismatch.
    """
    merged: dict[tuple, dict] = {}
    out: list[dict] = []
    for e in errors:
        loc = e["loc"]
        if not (len(loc) > 1 and isinstance(loc[-1], str) and loc[-1].split("[")[0] in _TYPE_TAGS):
            out.append(e)
            continue
        key = (loc[:-1], repr(e.get("input")))
        if key not in merged:
            merged[key] = {**e, "loc": loc[:-1], "tags": []}
            out.append(merged[key])
        entry = merged[key]
        entry["tags"].append(loc[-1])
        if not e["type"].endswith(("_type", "_parsing", "_from_float")):
            entry["refusal"] = e["msg"]
    for entry in merged.values():
        if len(entry["tags"]) > 1:
            entry["msg"] = entry.get("refusal") or f"expected {' or '.join(entry['tags'])}"
    return out


def _format_errors(err: ValidationError, source: str, lines: dict[tuple, int]) -> RecipeError:
    msgs = []
    hint = None
    for e in _merge_unions(err.errors()):
        loc = tuple(x for x in e["loc"] if x != "options")
        ctx_err = (e.get("ctx") or {}).get("error")
        deeper = (*loc, *getattr(ctx_err, "at", ()))  # a key inside the tune block has its own line
        dotted = ".".join(str(x) for x in loc) or "(top level)"
        line = next((lines[deeper[:i]] for i in range(len(deeper), 0, -1) if deeper[:i] in lines), None)
        where = f"{source}, line {line}" if line else source
        if e["type"] == "extra_forbidden":
            valid = _fields_at(loc[:-1])
            close = did_you_mean(str(loc[-1]), valid)
            msg = f"{where}: unknown key '{dotted}'" + (f" ({close.strip()})" if close else "")
            if valid:
                hint = f"valid keys under '{'.'.join(map(str, loc[:-1])) or 'top level'}': {', '.join(valid)}"
        elif isinstance(ctx_err, RecipeError | Exception) and hasattr(ctx_err, "hint"):
            said = ctx_err.message
            msg = (f"{where}: {said}" if said.startswith(f"{dotted}.") or not loc
                   else f"{where}: {dotted}: {said}")
            hint = ctx_err.hint
        else:
            got = e.get("input")
            got_s = "" if isinstance(got, dict) else f" (got {got!r})"
            said = e["msg"].removeprefix("Value error, ")
            msg = f"{where}: {dotted}: {said}{got_s}"
        msgs.append(msg)
    return RecipeError("invalid recipe\n  " + "\n  ".join(msgs), hint=hint)


def load_recipe(name_or_path: str | Path = "digits-mlp", overrides: list[str] | tuple[str, ...] = (),
                base: dict | None = None) -> Recipe:
    """Load a built-in name or a YAML file, apply dotted overrides, and validate the result."""
    if base is not None:
        text, source, raw = "", "recipe", dict(base)
    else:
        text, source = _recipe_source(str(name_or_path))
        try:
            raw = safe_yaml.load(text) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"{source}, line {mark.line + 1}, column {mark.column + 1}" if mark else source
            what = "refused" if isinstance(e, safe_yaml.AliasBomb) else "invalid YAML"
            raise RecipeError(f"{where}: {what}: {getattr(e, 'problem', e)}") from None
        if not text.strip():
            raise RecipeError(f"{source} is empty", hint="a recipe has data, model and train sections; "
                                                          "danlu recipes digits-mlp prints one to start from")
        if not isinstance(raw, dict):
            raise RecipeError(f"{source}: a recipe must be a mapping of sections (data, model, train)")
        if "name" not in raw:
            raw["name"] = Path(str(name_or_path)).stem
    lines = _line_index(text)
    if isinstance(overrides, str):  # one override, not its characters
        overrides = [overrides]
    parsed = [(parse_override(item), item) for item in overrides]
    for (keys, value), item in parsed:
        if keys == ["model", "name"] and isinstance(raw.get("model"), dict) and raw["model"].get("name") != value:
            # another model: the recipe's options were for its own model; options given on this command stay
            given = {k[2] for (k, _), _ in parsed if len(k) == 3 and k[:2] == ["model", "options"]} | {
                k[1] for (k, _), _ in parsed if len(k) == 2 and k[0] == "model"}
            raw["model"] = {k: v for k, v in raw["model"].items() if k in given or k == "name"}
            if isinstance(raw.get("tune"), dict):  # so was its search space over model options
                raw["tune"] = {k: v for k, v in raw["tune"].items() if not str(k).startswith("model.")} or None
        _set_path(raw, keys, value, item)
    try:
        return Recipe.model_validate(raw)
    except ValidationError as e:
        src = source if not overrides else f"{source} (with overrides {' '.join(overrides)})"
        raise _format_errors(e, src, lines) from None


def _refusal(base: dict, keys: list[str], value: Any) -> tuple[str, str | None] | None:
    """(why, hint) when ``keys=value`` would make ``base`` an invalid recipe; None when it is valid."""
    import copy

    raw = copy.deepcopy(base)
    item = f"{'.'.join(keys)}={value!r}"
    try:
        _set_path(raw, keys, value, item)
        Recipe.model_validate(raw)
    except RecipeError as e:
        return e.message, e.hint
    except ValidationError as e:
        err = _format_errors(e, "", {})
        first = err.message.split("\n  ", 1)[-1].splitlines()[0].lstrip(": ").strip()
        return (first if "unknown key" in first else f"{first} (for the value {value!r})"), err.hint
    return None
