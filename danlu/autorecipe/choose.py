"""From a DataProfile to recipes: the default one, and the other candidates a time budget may try.

Every rule says why in words that end up printed and in the run's recipe description, so a person
can disagree with a choice and edit the recipe. The first candidate is the default (what trains
without --time-limit); the others are compared with it on validation when there is a budget.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from danlu.autorecipe.inspect import DataProfile

# from-scratch CNNs: the images' own median side, kept between these (a 500 px photo at 500 px costs 60x
# a 64 px one on a CPU, and small nets gain little beyond 64-96 px)
MIN_SIDE, MAX_SIDE = 16, 64
PATIENCE_IMAGES, PATIENCE_TEXT, PATIENCE_TABLE = 8, 2, 15


@dataclass
class Candidate:
    """One recipe to try: its name in the leaderboard, the recipe dict, why it is there, and its share of a
    time budget (relative: a pretrained model gets more than a small net)."""

    name: str
    recipe: dict[str, Any]
    why: list[str]
    share: float = 1.0


@dataclass
class Choice:
    profile: DataProfile
    candidates: list[Candidate]
    reasons: list[str] = field(default_factory=list)  # about the data as a whole

    @property
    def default(self) -> Candidate:
        return self.candidates[0]


def choose(profile: DataProfile) -> Choice:
    """The candidates for this data, default first."""
    chooser = {"image": _images, "text": _texts, "tabular": _tables, "interactions": _interactions,
               "audio": _audio}[profile.kind]
    return chooser(profile)


def _round_side(side: int) -> int:
    """Down to a multiple of 8 (conv strides divide it evenly), within [MIN_SIDE, MAX_SIDE]."""
    return max(MIN_SIDE, min(MAX_SIDE, side // 8 * 8))


def _per_class(p: DataProfile) -> int:
    return min(p.class_counts.values()) if p.class_counts else p.rows


def _images(p: DataProfile) -> Choice:
    # the size a quarter of the images are below: most images keep their detail, few are blown up from
    # much less (and none gains detail by being enlarged)
    low = p.image_side_low or p.image_side or 64
    side = _round_side(low)
    channels = 1 if p.grayscale else 3
    reasons = [f"image size {side} px: a quarter of the images have a shorter side below {low} px"
               + (f" (capped at {MAX_SIDE} px for a net trained from scratch)" if low > MAX_SIDE else ""),
               f"{channels} channel(s): " + ("every sampled image is grey (equal colour channels), whatever its file "
                                            "mode" if channels == 1 else "the images have colour"),
               # the data cannot say whether a mirror image is the same class (a photo of a cat) or another
               # symbol (digits, letters), and flipping symbols costs more than it gains on photos
               "augmentation: small shifts, rotations and zoom; no mirror flips (they turn digits and letters "
               "into other symbols; add data.augment.flip=true for photos of objects)"]
    flip = False
    small = p.rows < 20_000
    widths = [32, 64, 128] if side <= 40 else [32, 64, 128, 128]
    data = {"name": "imagefolder", "root": p.path, "image_size": side, "channels": channels,
            "val_fraction": 0.15, "test_fraction": 0.2,
            "augment": {"flip": flip, "rotate": 10, "scale": [0.85, 1.0], "translate": 0.08}}
    cnn = {"name": "auto-image-cnn", "description": "", "seed": 0, "data": data,
           "model": {"name": "cnn", "channels": widths, "padding": "same", "batch_norm": True, "hidden": [128],
                     "dropout": 0.3},
           "train": {"epochs": 60 if small else 20, "batch_size": 32 if p.rows < 5000 else 64, "lr": 0.002,
                     "optimizer": "adamw", "weight_decay": 0.0005, "schedule": "none",
                     "early_stop": {"patience": PATIENCE_IMAGES}}}
    why_cnn = [f"a {len(widths)}-block CNN trained from scratch ({p.rows} images, {_per_class(p)} in the smallest "
               "class): cheap, and the baseline a pretrained backbone must beat on validation",
               f"epochs by early stopping on validation accuracy (up to {cnn['train']['epochs']}, patience "
               f"{PATIENCE_IMAGES})"]
    pre_data = {**data, "image_size": None, "channels": None,
                "augment": {"flip": flip, "rotate": 10, "scale": [0.8, 1.0]}}
    pretrained = {"name": "auto-image-efficientnet", "description": "", "seed": 0, "data": pre_data,
                  "model": {"name": "efficientnet_lite0", "weights": "imagenet", "freeze_backbone": True,
                            "dropout": 0.2},
                  "train": {"epochs": 12, "batch_size": 32, "eval_batch_size": 64, "lr": 0.003, "optimizer": "adamw",
                            "weight_decay": 0.0001, "schedule": "none", "early_stop": {"patience": 3}}}
    why_pre = ["EfficientNet-Lite0 with ImageNet weights (frozen backbone, new head) at its own 224 px: kept only "
               "if validation says it beats the CNN"]
    return Choice(p, [Candidate("cnn", cnn, why_cnn, 1.0), Candidate("efficientnet", pretrained, why_pre, 2.0)],
                  reasons)


def _texts(p: DataProfile) -> Choice:
    data: dict[str, Any] = {"name": "text", "val_fraction": 0.1, "test_fraction": 0.2}
    if p.layout == "text-folder":
        data["root"] = p.path
    else:
        data["path"] = p.path
        data["text_column"], data["label_column"] = p.text_column, p.label_column
    lstm_model = {"name": "lstm", "embed_dim": 128, "hidden": 128, "bidirectional": True, "cell": "lstm",
                  "dropout": 0.3, "pooling": "max"}
    lstm_train = {"epochs": 12, "batch_size": 64, "lr": 0.002, "optimizer": "adam", "schedule": "none",
                  "grad_clip": 1.0, "early_stop": {"patience": PATIENCE_TEXT}}
    chinese = p.language == "zh"
    lang = "Chinese" if chinese else "English"
    reasons = [f"{lang} text: CJK characters are {100 * (p.cjk_fraction or 0):.0f} % of the characters "
               f"(Chinese from 30 %)"]
    first_tok = "char" if chinese else "word"
    lstm = {"name": f"auto-text-{first_tok}-lstm", "description": "", "seed": 0,
            "data": {**data, "tokenizer": first_tok, "min_freq": 2 if p.rows > 5000 else 1},
            "model": lstm_model, "train": lstm_train}
    why_lstm = [f"a BiLSTM on {'characters (Chinese has no spaces between words)' if chinese else 'words'}, "
                f"trained from scratch; epochs by early stopping (patience {PATIENCE_TEXT})"]
    candidates = [Candidate(f"{first_tok}-lstm", lstm, why_lstm, 1.0)]
    if chinese:
        jieba = {**lstm, "name": "auto-text-jieba-lstm", "data": {**lstm["data"], "tokenizer": "jieba"}}
        candidates.append(Candidate("jieba-lstm", jieba, ["the same BiLSTM on jieba's words: kept if validation "
                                                          "says Chinese words beat characters here"], 1.0))
    else:
        minilm = {"name": "auto-text-minilm", "description": "", "seed": 0,
                  "data": {**data, "max_len": 64, "limit_train": 36000},
                  "model": {"name": "transformer", "pretrained": "minilm", "pooling": "mean"},
                  "train": {"epochs": 3, "batch_size": 32, "eval_batch_size": 128, "lr": 0.00008,
                            "optimizer": "adamw", "weight_decay": 0.01, "schedule": "linear", "warmup_epochs": 0.1,
                            "grad_clip": 1.0, "early_stop": {"patience": 1}}}
        candidates.append(Candidate("minilm", minilm, ["fine-tune the pretrained English MiniLM-L6 encoder "
                                                       "(sst2-minilm's settings): kept only if validation says it "
                                                       "beats the BiLSTM"], 4.0))
    return Choice(p, candidates, reasons)


def _builtin(name: str) -> dict[str, Any]:
    """A built-in recipe as a dict: the tables' candidates start from table-lightgbm and table-net, so a fix
    there reaches danlu train PATH too."""
    from importlib import resources

    from danlu import safe_yaml

    return safe_yaml.load(resources.files("danlu.recipes").joinpath(f"{name}.yaml").read_text(encoding="utf-8"))


def _registered(model: str) -> bool:
    from danlu.models.specs import MODELS

    return model in MODELS


def _tables(p: DataProfile) -> Choice:
    data = {"name": "csv", "path": p.path, "target": p.target, "task": p.task, "val_fraction": 0.15,
            "test_fraction": 0.2}
    what = f"{len(p.classes)} classes" if p.task == "classification" else "regression"
    reasons = [f"target '{p.target}' ({what}); {p.numeric_columns} numeric and {p.other_columns} other feature "
               "columns"]
    candidates = []
    if _registered("lightgbm"):
        gbm = {**_builtin("table-lightgbm"), "name": "auto-table-lightgbm", "description": "", "data": data}
        candidates.append(Candidate("lightgbm", gbm, [
            "gradient-boosted trees (LightGBM, table-lightgbm's settings), the strongest default on tables; "
            "rounds added until the validation loss stops improving"], 1.0))
    if _registered("tabular_net"):
        net = {**_builtin("table-net"), "name": "auto-table-net", "description": "", "data": data}
        net["train"] = {**net["train"], "batch_size": 64 if p.rows < 5000 else 256}
        why = ("a tabular neural net (table-net: category embeddings, quantile-normalized numbers, MLP 256-128); "
               f"epochs by early stopping (patience {net['train']['early_stop']['patience']})")
        candidates.append(Candidate("tabular_net", net, [why], 1.0))
    if not candidates:  # a build without the table models: the plain MLP on the one-hot encoding
        mlp = {"name": "auto-table-mlp", "description": "", "seed": 0, "data": data,
               "model": {"name": "mlp", "hidden": [256, 128], "dropout": 0.1, "batch_norm": True},
               "train": {"epochs": 200, "batch_size": 64 if p.rows < 5000 else 256, "lr": 0.001,
                         "optimizer": "adamw", "weight_decay": 0.0001, "early_stop": {"patience": PATIENCE_TABLE}}}
        candidates.append(Candidate("mlp", mlp, [f"an MLP 256-128; epochs by early stopping (patience "
                                                 f"{PATIENCE_TABLE})"], 1.0))
    return Choice(p, candidates, reasons)


# EASE inverts a users x users matrix (danlu.models.recommenders.EASE): 20,000 users is 3.2 GB in float64
EASE_MAX_USERS = 20_000


def _interactions(p: DataProfile) -> Choice:
    """Top-k recommendation from a who-interacted-with-what table: EASE where its inverse fits, item-kNN
    beside it, and BPR matrix factorization under a time budget; popularity is reported beside each."""
    recommend: dict[str, Any] = {"user_column": p.user_column, "item_column": p.item_column,
                                 "rating_column": p.rating_column, "time_column": p.time_column, "implicit": "all"}
    if p.time_column:
        recommend["split"] = "temporal"
        split_why = (f"per-user temporal split on '{p.time_column}': each user's last 20 % of interactions are "
                     "test, the 10 % before them validation (no future in training)")
    else:
        recommend["split"] = "random"
        split_why = ("no time column: a random split per user (the report marks it as leaking the future; add a "
                     "timestamp column for a temporal one)")
    reasons = [f"user-item interactions: a user column ('{p.user_column}') and an item column "
               f"('{p.item_column}') and no label column; recommendation (top-k), every interaction a positive"
               + (f" ('{p.rating_column}' kept for rating thresholds: recommend.implicit='rating >= 4')"
                  if p.rating_column else ""), split_why]

    def recipe(name: str, builtin: str) -> dict[str, Any]:
        base = _builtin(builtin)
        base.pop("tune", None)
        return {**base, "name": f"auto-{name}", "description": "", "data": {"name": "interactions", "path": p.path},
                "recommend": {**base.get("recommend", {}), **recommend}}

    knn = Candidate("item_knn", recipe("item-knn", "movielens-itemknn"), [
        "item-kNN (cosine with shrinkage): cheap, and explains each pick by an item the user had"], 1.0)
    bpr = Candidate("mf_ials", recipe("mf-ials", "movielens-ials"), [
        "matrix factorization by weighted implicit ALS (iALS, movielens-ials's settings), epochs picked on "
        "validation recall@20, then refit on train + validation"], 2.0)
    users = p.users or 0
    if users <= EASE_MAX_USERS:
        ease = Candidate("ease", recipe("ease", "movielens-ease"), [
            f"EASE (closed form, one λ): the strongest of the fast baselines on MovieLens; {users} users fit its "
            f"users x users inverse (up to {EASE_MAX_USERS})"], 1.0)
        return Choice(p, [ease, knn, bpr], reasons)
    knn.why.append(f"EASE left out: {users} users is past the {EASE_MAX_USERS} its users x users inverse fits")
    return Choice(p, [knn, bpr], reasons)


MAX_CLIP_SECONDS = 10.0  # a longer window costs a CPU more than it teaches a clip classifier


def _audio(p: DataProfile) -> Choice:
    """A folder of recordings: the audiofolder-cnn recipe (log-mel BC-ResNet) with the clip window from the
    clips' own lengths."""
    _, median, p90 = p.clip_seconds or (1.0, 1.0, 1.0)
    window = round(min(MAX_CLIP_SECONDS, max(0.25, p90)), 2)
    base = _builtin("audiofolder-cnn")
    recipe = {**base, "name": "auto-audio-cnn", "description": "",
              "data": {**base["data"], "root": p.path, "seconds": window}}
    reasons = [f"clip window {window:g} s: 90 % of the sampled clips are {p90:.2f} s or shorter (median "
               f"{median:.2f} s); longer clips are cropped at their centre, shorter ones padded"
               + (f" (capped at {MAX_CLIP_SECONDS:g} s)" if p90 > MAX_CLIP_SECONDS else "")]
    why = ["a small residual CNN (BC-ResNet-like) on log-mel spectrograms at 16 kHz, features and augmentation "
           "(gain, noise, shift, pitch, SpecAugment masks) inside the model; epochs by early stopping "
           f"(patience {base['train']['early_stop']['patience']})"]
    return Choice(p, [Candidate("audio_cnn", recipe, why, 1.0)], reasons)
