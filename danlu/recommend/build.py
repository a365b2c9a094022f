"""A recommendation model from a recipe, with its side features (titles through danlu's tokenizers)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from danlu.recipe import Recipe
from danlu.recommend.data import config_of

Bags = tuple[np.ndarray, np.ndarray]


def build(recipe: Recipe, n_users: int, n_items: int, features: dict | None = None) -> Any:
    """The recipe's model, fresh; MF's loss "auto" becomes bpr (ranking) or mse (ratings)."""
    from danlu.models.recommenders import build_recommender

    options = dict(recipe.model.options)
    name = recipe.model.name
    training = ("reg", "negatives", "title_tokens", "alpha", "nu", "map_steps", "map_lr", "map_weight_decay")
    for key in training:  # training options, not the model's shape
        options.pop(key, None)
    if name == "mf":
        options["loss"] = "mse" if config_of(recipe).task == "rating" else (
            "bpr" if options["loss"] in ("auto", "mse") else options["loss"])
    if name == "lightgcn":  # its own module (danlu/models/lightgcn.py)
        from danlu.models.lightgcn import LightGCN

        return LightGCN(n_users, n_items, **options)
    extra = {}
    if name == "two_tower":
        f = features or {}
        extra = {"n_genres": len(f.get("genres", [])) + 1, "n_years": len(f.get("years", [])) + 1,
                 "n_tokens": len(f.get("tokens", [])) + 1}
    return build_recommender(name, options, n_users, n_items, **extra)


def side_features(item_info: dict[str, list[Any]], title_tokens: int = 5000) -> dict[str, Any]:
    """Vocabularies of genres, years and title tokens; the tokenizer is picked from the titles (Chinese
    titles get characters, others words), as for text data."""
    from danlu.data.text.tokenizers import make_tokenizer

    genres = sorted({g for gs in item_info.get("genres", []) for g in gs})
    years = sorted({y for y in item_info.get("year", []) if y is not None})
    titles = [t for t in item_info.get("title", []) if t]
    tok_name = make_tokenizer("auto", titles).name if titles else "word"
    tok = make_tokenizer(tok_name)
    counts = Counter(t for title in titles for t in tok.tokenize(title) if t.isalnum())
    tokens = [t for t, _ in counts.most_common(title_tokens)]
    return {"genres": genres, "years": years, "tokens": tokens, "tokenizer": tok_name}


def encode_items(features: dict[str, Any], titles: list[str], genres: list[list[str]],
                 years: list[int | None]) -> tuple[Bags, np.ndarray, Bags]:
    """Items' side features as EmbeddingBag (index, offset) pairs and year indices; 0 is "unknown"."""
    from danlu.data.text.tokenizers import make_tokenizer

    tok = make_tokenizer(features["tokenizer"])
    g_index = {g: i + 1 for i, g in enumerate(features["genres"])}
    y_index = {y: i + 1 for i, y in enumerate(features["years"])}
    t_index = {t: i + 1 for i, t in enumerate(features["tokens"])}

    def bags(lists: list[list[int]]) -> Bags:
        lists = [x or [0] for x in lists]
        offsets = np.cumsum([0] + [len(x) for x in lists[:-1]])
        return np.asarray([i for x in lists for i in x], dtype=np.int64), offsets.astype(np.int64)

    g = bags([[g_index[x] for x in gs if x in g_index] for gs in genres])
    t = bags([[t_index[x] for x in tok.tokenize(title or "") if x in t_index] for title in titles])
    y = np.asarray([y_index.get(v, 0) for v in years], dtype=np.int64)
    return g, y, t


def with_features(model: Any, features: dict[str, Any] | None, item_info: dict[str, list[Any]], n_items: int) -> Any:
    """The two-tower model's item side features set from the item table (other models pass through)."""
    if features is not None and hasattr(model, "set_features"):
        model.set_features(*encode_items(features, item_info.get("title", [""] * n_items),
                                         item_info.get("genres", [[]] * n_items),
                                         item_info.get("year", [None] * n_items)))
    return model
