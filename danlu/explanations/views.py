"""Views over a whole split: the examples the model got most wrong (top losses), and a table model's
global feature importance. Both re-load the run's data exactly as ``danlu evaluate`` does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from danlu.errors import DanluError


def load_split(explainer: Any, data_dir: Path | None, prefer: str = "val") -> tuple[Any, str]:
    """(the run's ``prefer`` split, or test when that is empty; its name)."""
    from danlu import data, models

    recipe, saved = explainer.predictor.recipe, explainer.schema
    hints = models.input_hints(recipe.model.name, recipe.model.options)
    splits, schema = data.load(recipe.data, seed=recipe.seed, data_dir=data_dir, hints=hints)
    if saved.classes != schema.classes:
        raise DanluError(f"the data now has classes {schema.classes}, the run was trained on {saved.classes}",
                         hint="explain on the same data the run was trained on")
    for name in (prefer, "test"):
        part = getattr(splits, name)
        if len(part):
            return part, name
    raise DanluError("the run's validation and test splits are both empty", hint="train with data.val_fraction > 0")


def train_split_x(explainer: Any, data_dir: Path | None) -> torch.Tensor | None:
    """The encoded training rows (for the training-mean baseline of category columns); None if the
    data is no longer there (the baseline then treats each category column as absent)."""
    try:
        return load_split(explainer, data_dir, "train")[0].x
    except DanluError:
        return None


def _inputs_of(part: Any, idx: list[int], explainer: Any) -> torch.Tensor:
    """The split's examples at ``idx``: uint8 pixels for images (decoded if the split streams), else x."""
    if hasattr(part, "x"):
        return part.x[idx]
    return explainer.predictor.image_pixels([part.paths[i] for i in idx])


def _targets_of(part: Any) -> torch.Tensor:
    return part.y if hasattr(part, "y") else torch.as_tensor(part.labels)


@torch.no_grad()
def per_example_loss(explainer: Any, part: Any, chunk: int = 512) -> np.ndarray:
    """The loss of every example of a split (cross-entropy, or squared error on standardized targets)."""
    schema, model = explainer.schema, explainer.predictor.model.eval()
    y = _targets_of(part)
    losses = []
    for start in range(0, len(part), chunk):
        idx = list(range(start, min(start + chunk, len(part))))
        x = _inputs_of(part, idx, explainer)
        if schema.kind == "image":
            x = explainer.predictor.normalize(x)
        out = model(x).float()
        yy = y[idx]
        if schema.task == "classification":
            losses.append(F.cross_entropy(out, yy.long(), reduction="none"))
        else:
            m = torch.tensor(schema.target_mean or [0.0])
            s = torch.tensor(schema.target_std or [1.0])
            losses.append(((out - (yy.float().reshape(out.shape) - m) / s) ** 2).mean(1))
    return torch.cat(losses).numpy()


def _actual(schema: Any, y: Any) -> str:
    if schema.task == "classification":
        return str(schema.classes[int(y)])
    vals = np.atleast_1d(np.asarray(y, dtype=float))
    return ", ".join(f"{v:.4g}" for v in vals)


MAX_TOP_LOSSES = 256


def top_losses(explainer: Any, k: int, data_dir: Path | None, out: Path | None, top_k: int = 3) -> dict[str, Any]:
    """The ``k`` validation examples with the highest loss, each explained for what the model predicted."""
    from danlu.explanations import render
    from danlu.explanations.records import caption, public_row
    from danlu.runs.files import atomic_write_text, write_json

    if not 1 <= k <= MAX_TOP_LOSSES:  # each is explained (tens of passes) and drawn in one grid
        raise DanluError(f"--top-losses must be between 1 and {MAX_TOP_LOSSES}, got {k}",
                         hint=f"explain the worst {MAX_TOP_LOSSES} at most; more would take hours and one huge grid")
    part, split = load_split(explainer, data_dir)
    losses = per_example_loss(explainer, part)
    order = np.argsort(-losses, kind="stable")[:k].tolist()
    names = [(part.names[i] if getattr(part, "names", None) else f"{split}[{i}]") for i in order]
    x = _inputs_of(part, order, explainer)
    kind = explainer.schema.kind
    if kind == "image":
        records = explainer.images(x, names, None, top_k)
    elif kind == "text":
        records = explainer.texts(x, names, None, None, top_k)
    else:
        records = explainer.rows(x, names, None, top_k)
    y = _targets_of(part)
    for rec, i in zip(records, order, strict=True):
        rec["loss"] = round(float(losses[i]), 6)
        rec["actual"] = _actual(explainer.schema, y[i].tolist())
        rec["index"] = i
    result: dict[str, Any] = {"split": split, "explanations": records}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        caps = [f"actual {r['actual']} · loss {r['loss']:.3g}\n{caption(r)}" for r in records]
        if kind == "image":
            cells = [(r["pixels"], render.display_map(r["map"], r["method"]),
                      c.replace(" · explaining", "\nexplaining")) for r, c in zip(records, caps, strict=True)]
            render.grid_figure(cells, out / "top-losses.png")
            result["grid"] = "top-losses.png"
        elif kind == "text":
            from danlu.explanations.text import html_spans

            page = render.text_html([(f"{r['input']} — {c}", html_spans(r["tokens"]))
                                     for r, c in zip(records, caps, strict=True)], f"top {k} losses ({split})")
            atomic_write_text(out / "top-losses.html", page)
            result["grid"] = "top-losses.html"
        else:
            cells = [([n for n, _ in r["features"]], [v for _, v in r["features"]], c)
                     for r, c in zip(records, caps, strict=True)]
            render.bars_grid_figure(cells, out / "top-losses.png")
            result["grid"] = "top-losses.png"
        write_json(out / "top-losses.json", {"split": split, "explanations": [public_row(r) for r in records]})
        result["out"] = str(out)
    return result


def global_importance(explainer: Any, data_dir: Path | None, out: Path | None) -> dict[str, Any]:
    """A table model's columns ranked on the validation split: permutation importance (the loss rise
    when a column is shuffled), or with --method ig/shap/saliency the mean |attribution| over the rows."""
    from danlu.explanations import render
    from danlu.explanations.tables import column_groups, permutation_importance
    from danlu.runs.files import write_json

    schema = explainer.schema
    if schema.kind != "tabular":
        raise DanluError(f"--global ranks a table model's columns; this run's data is {schema.kind}",
                         hint="for images and texts, explain inputs or use --top-losses K")
    part, split = load_split(explainer, data_dir)
    columns, groups = column_groups(schema)
    chosen = getattr(explainer, "requested", "auto")
    if chosen == "auto":
        mean, std, base = permutation_importance(explainer.predictor.model, part.x, part.y, schema, groups,
                                                 len(columns))
        measure = "permutation importance (validation loss increase when the column is shuffled)"
        rows = [{"feature": c, "importance": round(float(m), 6), "std": round(float(s), 6)}
                for c, m, s in zip(columns, mean, std, strict=True)]
        extra: dict[str, Any] = {"loss": round(base, 6)}
    else:
        train_x = train_split_x(explainer, data_dir)
        if train_x is not None:
            explainer.set_table_baseline(train_x)
        records = explainer.rows(part.x, [f"{split}[{i}]" for i in range(len(part))])
        values = np.abs(np.array([[v for _, v in r["features"]] for r in records])).mean(0)
        measure = f"mean |{explainer.method_name}| over the {split} rows"
        rows = [{"feature": c, "importance": round(float(v), 6)} for c, v in zip(columns, values, strict=True)]
        extra = {}
    rows.sort(key=lambda r: -r["importance"])
    result: dict[str, Any] = {"split": split, "samples": len(part), "measure": measure, "importance": rows, **extra}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        render.bars_figure([r["feature"] for r in rows], [r["importance"] for r in rows],
                           f"{measure}, {len(part)} rows", out / "global-importance.png")
        write_json(out / "global-importance.json", result)
        result = {**result, "chart": "global-importance.png", "out": str(out)}
    return result
