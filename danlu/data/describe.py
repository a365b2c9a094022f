"""`danlu data describe`: what a recipe's data looks like before training on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def describe(recipe_name: str, overrides: list[str], data_dir: Path | None = None) -> str:
    from danlu import data, models
    from danlu.recipe import load_recipe

    recipe = load_recipe(recipe_name, overrides)
    hints = models.input_hints(recipe.model.name, recipe.model.options)
    splits, schema = data.load(recipe.data, seed=recipe.seed, data_dir=data_dir, hints=hints)
    lines = [f"data: {schema.source} ({schema.kind}, {schema.task})", f"input shape: {schema.input_shape}"]
    lines.append("rows: " + "  ".join(f"{k} {v}" for k, v in splits.sizes().items()))
    if schema.task == "classification":
        from danlu.printable import terminal_safe

        classes = [terminal_safe(c) for c in schema.classes or []]  # folder names may hold newlines, escapes
        lines.append(f"classes ({len(classes)}): {', '.join(classes[:20])}{' …' if len(classes) > 20 else ''}")
        for name in ("train", "val", "test"):
            split = getattr(splits, name)
            counts = np.bincount(np.asarray(split.y), minlength=len(classes)) if len(split) else np.zeros(len(classes))
            share = "  ".join(f"{classes[i]}: {int(c)} ({c / max(1, counts.sum()):.0%})"
                              for i, c in enumerate(counts[:10]))
            lines.append(f"  {name} balance: {share}")
    if schema.kind == "image":
        lines.append(f"normalization: mean {schema.mean} std {schema.std}")
    if schema.kind == "text":
        t = schema.text
        lines.append(f"tokenizer: {t['tokenizer']}  vocab {t['vocab_size']}  max_len {t['max_len']}")
        stats = splits.stats
        if "length_percentiles" in stats:
            pct = "  ".join(f"p{int(k)} {v:.0f}" for k, v in stats["length_percentiles"].items())
            lines.append(f"train length in tokens: {pct}")
        for s in ("val", "test"):
            if f"oov_rate_{s}" in stats:
                lines.append(f"out-of-vocabulary rate {s}: {stats[f'oov_rate_{s}']:.2%}")
        counts = "  ".join(f"{s} {stats.get(f'truncated_{s}', 0)}" for s in ("train", "val", "test"))
        lines.append(f"truncated: {counts}")
    for note in splits.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines)
