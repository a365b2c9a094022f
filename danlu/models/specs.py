"""Model options, one pydantic class per model family, and the name → family table.

Kept free of torch so that recipes validate (and ``danlu --help`` answers) without importing it.
The builders live in the family modules and are looked up in ``danlu.models.registry``.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from danlu.errors import RecipeError, unknown_name

Size = Annotated[int, Field(ge=1)]  # a layer width or channel count
# batch: BatchNorm; group: GroupNorm (no batch statistics: trains with DP and federates); none
Norm = Literal["batch", "group", "none"]


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=(), allow_inf_nan=False)


def _check_groups(norm: str | None, batch_norm: bool, groups: int, widths: list[int], what: str) -> None:
    """GroupNorm splits each layer's channels into ``norm_groups`` equal groups: every width must divide."""
    if (norm if norm is not None else ("batch" if batch_norm else "none")) != "group":
        return
    bad = [w for w in widths if w % groups]
    if bad:
        raise ValueError(f"model.norm=group splits each of the {what} into model.norm_groups={groups} groups, but "
                         f"{', '.join(map(str, bad))} is not a multiple of {groups} (set model.norm_groups to a "
                         f"common divisor, e.g. {math.gcd(groups, *widths)})")


class MLPOptions(_Options):
    """Dense layers on flattened input: images or tabular rows."""

    hidden: list[Size] = [128]
    dropout: float = Field(0.2, ge=0, lt=1)
    batch_norm: bool = False
    norm: Norm | None = None  # None: batch_norm decides (batch if true, else none); given, it wins
    norm_groups: Size = 8  # GroupNorm's groups per layer (with norm=group)
    activation: Literal["relu", "gelu", "tanh", "silu"] = "relu"

    @model_validator(mode="after")
    def _groups_divide(self) -> MLPOptions:
        _check_groups(self.norm, self.batch_norm, self.norm_groups, self.hidden, "model.hidden widths")
        return self


class CNNOptions(_Options):
    """Conv blocks (conv → [BN or GroupNorm] → max-pool → activation), then dense layers; shapes inferred."""

    channels: list[Size] = [32, 64]
    # one value for every conv layer, or a list with one per entry of model.channels
    kernel_size: Size | list[Size] = 3
    stride: Size | list[Size] = 1
    padding: Literal["valid", "same"] | Annotated[int, Field(ge=0)] | list[Annotated[int, Field(ge=0)]] = "valid"
    pool: int = Field(2, ge=1)
    pool_stride: Size | None = None  # None: the pool's size (non-overlapping); 1: Papernot et al.'s DP CNN
    hidden: list[Size] = [128]
    dropout: float = Field(0.0, ge=0, lt=1)
    batch_norm: bool = False
    # monotonic ones only, so pooling first is the same function; tanh trains better under DP-SGD
    activation: Literal["relu", "tanh"] = "relu"
    norm: Norm | None = None  # None: batch_norm decides (batch if true, else none); given, it wins
    norm_groups: Size = 8  # GroupNorm's groups per conv block (with norm=group)

    @model_validator(mode="after")
    def _groups_divide(self) -> CNNOptions:
        _check_groups(self.norm, self.batch_norm, self.norm_groups, self.channels, "model.channels")
        for name in ("kernel_size", "stride", "padding"):
            value = getattr(self, name)
            if isinstance(value, list) and len(value) != len(self.channels):
                raise ValueError(f"model.{name} has {len(value)} entries for {len(self.channels)} conv layers "
                                 f"(model.channels={self.channels}): give one per layer, or one number for all")
        return self


class SimpleCNNOptions(_Options):
    """Article 2's CNN: one conv (3×3, pad 1) → ReLU → max-pool 2 → FC → ReLU → FC."""

    channels: int = Field(64, ge=1)
    hidden: int = Field(128, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)


class FastResNetOptions(_Options):
    """cifar10-fast's net: conv stages that pool early, residual pairs, BN, optional test-time flip."""

    stem: int = Field(32, ge=1)
    widths: list[Size] = Field([64, 128, 256], min_length=1)
    residual: bool | list[bool] = True  # one flag for all stages, or one per stage
    tta_flip: bool = True  # eval mode averages the logits of the image and its mirror
    norm: Literal["batch", "group"] = "batch"  # group: GroupNorm, for DP training and federation
    norm_groups: Size = 8
    # the fast-CIFAR tricks, off by default (danlu/models/fast.py):
    whiten: int = Field(0, ge=0, le=7)  # K > 0: a frozen KxK patch-whitening conv fit on data replaces the stem conv
    activation: Literal["relu", "gelu"] = "relu"
    logit_scale: float = Field(1.0, gt=0, allow_inf_nan=False)  # the head's output times this (e.g. 1/9)
    head_bias: bool = True
    tta: Literal["none", "flip", "flip_translate"] | None = None  # None: tta_flip decides (flip or none)
    block: Literal["residual", "double"] = "residual"  # double: two convs a stage, no skip (model.residual unused)
    norm_scale: bool = True  # false: BN scales frozen at 1
    dirac: bool = False  # each conv starts as a partial identity

    @model_validator(mode="after")
    def _groups_divide(self) -> FastResNetOptions:
        _check_groups(self.norm, False, self.norm_groups, [self.stem, *self.widths], "model.stem and model.widths")
        return self


class PretrainedOptions(_Options):
    """A pretrained backbone with a new head (transfer learning)."""

    weights: str | None = "imagenet"  # imagenet | none | /path/to/file
    freeze_backbone: bool = False
    dropout: float = Field(0.2, ge=0, lt=1)


class RNNOptions(_Options):
    embed_dim: int = Field(128, ge=1)
    hidden: int = Field(128, ge=1)
    layers: int = Field(1, ge=1)
    bidirectional: bool = True
    cell: Literal["lstm", "gru"] = "lstm"
    dropout: float = Field(0.3, ge=0, lt=1)
    pooling: Literal["max", "last", "mean"] = "max"


class ArticleLSTMOptions(_Options):
    embed_dim: int = Field(16, ge=1)
    hidden: int = Field(32, ge=1)


class TextCNNOptions(_Options):
    embed_dim: int = Field(128, ge=1)
    channels: int = Field(100, ge=1)
    kernel_sizes: list[Size] = [3, 4, 5]
    dropout: float = Field(0.5, ge=0, lt=1)


class TransformerOptions(_Options):
    pretrained: str = "minilm"  # minilm, a local folder, or a hub name (online only)
    pooling: Literal["mean", "cls"] = "mean"
    freeze_layers: int = Field(0, ge=-1)  # freeze embeddings + first N layers; -1 = the whole encoder
    dropout: float = Field(0.1, ge=0, lt=1)


class TabularNetOptions(_Options):
    """Embeddings for category columns, quantile-normalized numbers, then dense layers (a table's net)."""

    hidden: list[Size] = [256, 128]
    dropout: float = Field(0.1, ge=0, lt=1)
    embed_dropout: float = Field(0.0, ge=0, lt=1)
    batch_norm: bool = True


class BoostingOptions(_Options):
    """Gradient-boosted trees (LightGBM): many rounds at a modest rate, stopped early on the val split."""

    # the most boosting rounds; early stopping usually ends far sooner. auto: 2000, or 1000 from LARGE_TABLE
    # training rows (danlu/models/boosting.py: boosting_schedule)
    n_estimators: int | Literal["auto"] = "auto"
    # auto: 0.05, or 0.1 from LARGE_TABLE training rows (diamonds: half the rounds for the same R²)
    learning_rate: float | Literal["auto"] = "auto"
    early_stopping_rounds: int = Field(50, ge=0)  # rounds without a better val loss before stopping; 0: off
    # then train again on train + val for 1.1x the best round count (more data; +0.01-0.02 accuracy or R² on
    # the small tables of benchmarks/tables.py); false keeps the early-stopped booster. auto: true below
    # LARGE_TABLE training rows, false from there (val adds a ninth to the rows, and the refit doubles the time)
    refit: bool | Literal["auto"] = "auto"

    @model_validator(mode="after")
    def _check_numbers(self) -> BoostingOptions:
        if not isinstance(self.n_estimators, str) and self.n_estimators < 1:
            raise ValueError("n_estimators must be at least 1 (or auto)")
        if not isinstance(self.learning_rate, str) and not 0 < self.learning_rate <= 1:
            raise ValueError("learning_rate must be in (0, 1] (or auto)")
        return self
    num_leaves: int = Field(31, ge=2, le=131072)
    max_depth: int = Field(-1, ge=-1)  # -1: no limit (num_leaves bounds the trees)
    min_child_samples: int = Field(20, ge=1)
    feature_fraction: float = Field(1.0, gt=0, le=1)
    bagging_fraction: float = Field(1.0, gt=0, le=1)
    bagging_freq: int = Field(0, ge=0)
    lambda_l2: float = Field(0.0, ge=0)
    min_split_gain: float = Field(0.0, ge=0)
    max_bin: int = Field(255, ge=2)
    cat_smooth: float = Field(10.0, ge=0)


class EnsembleMember(_Options):
    """One member of a table ensemble: a trained run of a table model, and its weight in the blend."""

    name: Literal["lightgbm", "tabular_net"]
    weight: float = Field(gt=0, le=1)
    run: str  # the member's run folder: its model.safetensors is copied in when the ensemble is assembled
    options: dict[str, Any] = {}  # the member run's model options (its recipe.yaml's)


class TableEnsembleOptions(_Options):
    """A weighted blend of trained table models (probabilities or values), weights fitted on validation by
    ``danlu train TABLE --time-limit`` (danlu/autorecipe/ensemble.py), which writes this recipe."""

    members: list[EnsembleMember] = Field(min_length=2)

    @model_validator(mode="after")
    def _check_members(self) -> TableEnsembleOptions:
        total = sum(m.weight for m in self.members)
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"model.members' weights must add up to 1 (they add up to {total:g})")
        for m in self.members:
            m.options = validate_options(m.name, m.options)
        return self


class AudioAugmentOptions(_Options):
    """Batch augmentation of audio models, training mode only (danlu/models/audio.py)."""

    gain_db: float = Field(0.0, ge=0, le=40)  # random gain within ± this
    noise_snr: tuple[float, float] | None = None  # white noise at a random SNR (dB) in this range
    shift_s: float = Field(0.0, ge=0, le=5)  # random time shift within ± this many seconds (zero-filled)
    pitch_semitones: float = Field(0.0, ge=0, le=12)  # random pitch shift within ± this (spectrum and contour)
    range_scale: float = Field(1.0, ge=1, le=4)  # tone_net: the contour's range times up to this or 1/this
    register_semitones: float = Field(0.0, ge=0, le=12)  # tone_net, pitch_norm=voice: contour moved ± this
    truncate: float = Field(0.0, ge=0, lt=1)  # tone_net: drop up to this fraction of the contour's end
    time_masks: int = Field(0, ge=0, le=10)  # SpecAugment: time stripes per clip ...
    time_mask_frames: int = Field(10, ge=1)  # ... each up to this many 10 ms frames wide
    freq_masks: int = Field(0, ge=0, le=10)  # SpecAugment: mel-band stripes per clip ...
    freq_mask_bins: int = Field(8, ge=1)  # ... each up to this many mel bands wide


class BCResNetOptions(_Options):
    """Log-mel → broadcasted-residual CNN (BC-ResNet-like); the waveform is the input, features inside."""

    n_mels: int = Field(40, ge=8, le=256)
    widths: list[Size] = Field([16, 24, 32, 48], min_length=1)
    blocks: int = Field(1, ge=1, le=8)  # BC blocks per stage
    dropout: float = Field(0.1, ge=0, lt=1)
    normalize: bool = True  # per-utterance normalization of the log-mel (gain-free)
    augment: AudioAugmentOptions = AudioAugmentOptions()


class ToneNetOptions(_Options):
    """Pitch contour (YIN, time-normalized) through a 1-D conv net, joined with a BC-ResNet spectrogram branch."""

    points: int = Field(24, ge=4, le=256)  # contour samples over the voiced stretch
    level: bool = False  # also the clip's mean pitch about reference_hz (a voice's register: same voices only)
    reference_hz: float = Field(150.0, gt=20, le=2000)
    f_min: float = Field(60.0, gt=20, le=1000)
    f_max: float = Field(500.0, gt=40, le=2000)
    contour_width: Size = 32
    dropout: float = Field(0.2, ge=0, lt=1)
    spectrogram: bool = True  # false: the contour alone
    n_mels: int = Field(40, ge=8, le=256)
    widths: list[Size] = Field([16, 24, 32], min_length=1)
    blocks: int = Field(1, ge=1, le=8)
    # the pitch track (danlu/models/audio_features.py PitchContour)
    pitch_norm: Literal["utterance", "voice"] = "utterance"  # about the clip's own mean, or z-scored per voice
    voices: int = Field(1, ge=1, le=7)  # pitch_norm=voice: how many voices the training clips hold (speakers)
    yin_threshold: float = Field(0.15, gt=0, le=1)  # YIN's dip threshold; higher: fewer octave-down errors
    voicing: float = Field(0.35, gt=0, le=1)  # frames with YIN aperiodicity below this (and not silent) are voiced
    smooth: int = Field(1, ge=1, le=11)  # running median over this many 10 ms frames (odd)
    duration: bool = False  # one more channel: the voiced stretch's length (the neutral tone is short)
    augment: AudioAugmentOptions = AudioAugmentOptions()

    @model_validator(mode="after")
    def _pitch_range(self) -> ToneNetOptions:
        if self.f_min >= self.f_max:
            raise ValueError(f"model.f_min ({self.f_min:g} Hz) must be below model.f_max ({self.f_max:g} Hz)")
        if self.smooth % 2 == 0:
            raise ValueError(f"model.smooth must be odd (a running median is centred), got {self.smooth}")
        return self


# name → (options class, data kinds it accepts, one-line description)
MODELS: dict[str, tuple[type[_Options], tuple[str, ...], str]] = {
    "mlp": (MLPOptions, ("image", "tabular"), "multi-layer perceptron on flattened input (article 1)"),
    "cnn": (CNNOptions, ("image",), "configurable conv net, shapes inferred (article 4)"),
    "simple_cnn": (SimpleCNNOptions, ("image",), "one conv block + two dense layers (article 2)"),
    "fast_resnet": (FastResNetOptions, ("image",), "small residual net with BN for training from scratch fast"),
    "efficientnet_lite0": (PretrainedOptions, ("image",), "EfficientNet-Lite0, ImageNet weights offline (article 5)"),
    "resnet18": (PretrainedOptions, ("image",), "torchvision ResNet-18, ImageNet weights from a file or online"),
    "resnet34": (PretrainedOptions, ("image",), "torchvision ResNet-34"),
    "resnet50": (PretrainedOptions, ("image",), "torchvision ResNet-50"),
    "lstm": (RNNOptions, ("text",), "embedding → (bi)LSTM/GRU; padding never reaches the RNN"),
    "article_lstm": (ArticleLSTMOptions, ("text",), "article 3's Embedding(16) → LSTM(32) → Dense, done right"),
    "textcnn": (TextCNNOptions, ("text",), "embedding → parallel convolutions → masked max-pool"),
    "transformer": (TransformerOptions, ("text",), "fine-tune a pretrained encoder (MiniLM offline)"),
    "tabular_net": (TabularNetOptions, ("tabular",), "category embeddings + robust numbers → MLP, for tables"),
    "lightgbm": (BoostingOptions, ("tabular",), "gradient-boosted trees (LightGBM), early-stopped on val"),
    "table_ensemble": (TableEnsembleOptions, ("tabular",), "weighted blend of trained lightgbm / tabular_net runs"),
    "bc_resnet": (BCResNetOptions, ("audio",), "log-mel (in the model) → small broadcasted-residual CNN"),
    "tone_net": (ToneNetOptions, ("audio",), "pitch contour (YIN in the model) + log-mel CNN, for tones"),
}


def validate_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """Check a model's options against its spec; return them with defaults filled in."""
    from danlu.models.recommend_specs import RECOMMENDERS

    if name not in MODELS and name not in RECOMMENDERS:
        raise unknown_name("model", name, [*MODELS, *RECOMMENDERS])
    spec = MODELS[name][0] if name in MODELS else RECOMMENDERS[name][0]
    try:
        return spec.model_validate(options).model_dump(mode="json")
    except ValidationError as e:
        msgs = []
        for err in e.errors():
            key = ".".join(str(x) for x in err["loc"])
            if not key:  # a check across options (model_validator)
                msgs.append(str(err["msg"]).removeprefix("Value error, "))
            elif err["type"] == "extra_forbidden":
                msgs.append(f"model.{key}: unknown option for model '{name}'")
            else:
                msgs.append(f"model.{key}: {err['msg']} (got {err.get('input')!r})")
        raise RecipeError("; ".join(msgs), hint=f"options of '{name}': {option_help(name)}") from None


def option_help(name: str) -> str:
    from danlu.models.recommend_specs import RECOMMENDERS

    spec = MODELS[name][0] if name in MODELS else RECOMMENDERS[name][0]
    return ", ".join(f"{k}=" + ("(required)" if f.is_required() else repr(f.default))
                     for k, f in spec.model_fields.items())
