"""Options of the recommendation models, torch-free so recipes validate fast.

A table of its own (not ``specs.MODELS``): these models are fit on a user-item matrix, not built from a
``Schema``; ``specs.validate_options`` reads both tables, and danlu/models/recommenders.py builds them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=(), allow_inf_nan=False)


class PopularityOptions(_Options):
    """Every user gets the most-interacted items they have not seen: the floor every model must beat."""


class ItemKNNOptions(_Options):
    neighbours: int = Field(100, ge=1)  # kept per item (the rest of its similarity row is dropped)
    shrinkage: float = Field(10.0, ge=0)  # co-count / (‖i‖·‖j‖ + shrinkage): rare pairs count less


class EASEOptions(_Options):
    l2: float = Field(500.0, gt=0)  # λ on the diagonal of the Gram matrix (Steck 2019)


class MFOptions(_Options):
    factors: int = Field(64, ge=1)
    # auto: bpr for ranking, mse (biased MF) for ratings; softmax: cross-entropy over the whole catalogue;
    # ials: weighted implicit ALS, closed-form alternating solves (danlu/recommend/ials.py)
    loss: Literal["auto", "bpr", "softmax", "mse", "ials"] = "auto"
    reg: float = Field(0.0, ge=0)  # L2 on the embeddings of each batch's users and items; ials: λ
    negatives: int = Field(1, ge=1)  # bpr: sampled negatives per positive
    dropout: float = Field(0.0, ge=0, lt=1)  # on the user vector while training (ranking losses)
    alpha: float = Field(0.01, gt=0)  # ials: weight of every unobserved (user, item) pair
    nu: float = Field(1.0, ge=0)  # ials: λ scaled by (positives + alpha × other side's size) ** nu


class TwoTowerOptions(_Options):
    dim: int = Field(64, ge=1)
    features: list[Literal["id", "genres", "year", "title"]] = ["id", "genres", "year", "title"]
    title_tokens: int = Field(5000, ge=10)  # vocabulary size of title tokens
    id_dropout: float = Field(0.3, ge=0, lt=1)  # items' id embedding dropped this often: the features learn alone
    # ials: the id vectors by iALS (as MF's), then the side features regressed onto them (recommend/feature_map.py)
    loss: Literal["bpr", "softmax", "ials"] = "bpr"
    reg: float = Field(0.0, ge=0)  # ials: λ
    negatives: int = Field(1, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)  # on the user vector while training
    alpha: float = Field(0.01, gt=0)  # ials: weight of every unobserved (user, item) pair
    nu: float = Field(1.0, ge=0)  # ials: λ scaled by (positives + alpha × other side's size) ** nu
    map_steps: int = Field(300, ge=0)  # ials: full-batch Adam steps of the features → item vectors regression
    map_lr: float = Field(0.01, gt=0)  # ials: that regression's learning rate
    # ials: its L2 (Adam's weight_decay); without it, it fit items held out of it worse than zero vectors do
    map_weight_decay: float = Field(0.003, ge=0)


class LightGCNOptions(_Options):
    dim: int = Field(64, ge=1)
    layers: int = Field(3, ge=0)  # graph convolutions; 0 is MF
    reg: float = Field(0.0, ge=0)
    negatives: int = Field(1, ge=1)


# name → (options class, one-line description)
RECOMMENDERS: dict[str, tuple[type[_Options], str]] = {
    "popularity": (PopularityOptions, "most-interacted unseen items (the baseline beside every model)"),
    "item_knn": (ItemKNNOptions, "item-item cosine neighbours with shrinkage; explains by rated items"),
    "ease": (EASEOptions, "EASE: closed-form item-item ridge regression with a zero diagonal"),
    "mf": (MFOptions, "matrix factorization in PyTorch: BPR for implicit, biased MSE for ratings"),
    "two_tower": (TwoTowerOptions, "user tower × item tower on genres, year, title tokens: scores new items"),
    "lightgcn": (LightGCNOptions, "LightGCN: MF embeddings averaged over the user-item graph's layers (BPR)"),
}
