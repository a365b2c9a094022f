"""Side by side: the test metrics of several runs as deltas against the first, the recipe keys that differ,
and their learning curves on one figure. ``danlu runs compare`` and the studio's compare page share it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from danlu.errors import RunError
from danlu.runs.files import read_json
from danlu.runs.store import metrics_history, read_run_recipe

MISSING = "(not set)"


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """A nested recipe as dotted keys (``train.lr``), the form overrides are written in."""
    if not isinstance(d, dict):
        return {prefix: d} if prefix else {}
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


def recipe_diff(recipes: list[dict]) -> dict[str, list[Any]]:
    """The dotted keys whose values are not the same in every recipe, each with its value per recipe."""
    flat = [flatten(r) for r in recipes]
    keys = sorted(set().union(*flat)) if flat else []
    return {k: [f.get(k, MISSING) for f in flat] for k in keys if len({repr(f.get(k, MISSING)) for f in flat}) > 1}


def _metrics(run: Path) -> dict[str, float]:
    path = run / "report.json"
    if not path.exists():
        return {}
    data = read_json(path)
    metrics = data.get("metrics") if isinstance(data, dict) else None
    if not isinstance(metrics, dict):
        raise RunError(f"{path} is damaged: no metrics object", hint="evaluate the run again: danlu evaluate RUN")
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}


def compare(runs: list[Path]) -> dict[str, Any]:
    """Metrics per run, their deltas against the first run, and the recipe diff."""
    if len(runs) < 2:
        raise RunError("compare needs at least two runs", hint="danlu runs compare RUN_A RUN_B [RUN_C ...]")
    metrics = [_metrics(r) for r in runs]
    names = sorted(set().union(*metrics), key=lambda k: (k not in ("accuracy", "f1_macro", "r2", "mae"), k))
    table = {}
    for k in names:
        values = [m.get(k) for m in metrics]
        base = values[0]
        table[k] = {"values": values,
                    "deltas": [None if v is None or base is None else v - base for v in values]}
    return {"runs": [r.name for r in runs], "paths": [str(r) for r in runs], "metrics": table,
            "recipe_diff": recipe_diff([read_run_recipe(r) for r in runs])}


def curve_metric(histories: list[list[dict]]) -> str | None:
    """The validation metric all runs logged (accuracy first), for the second panel."""
    for m in ("val_accuracy", "val_r2", "val_mae", "val_f1_macro"):
        if histories and all(h and m in h[0] for h in histories):
            return m
    return None


def overlay_curves(runs: list[Path], path: Path) -> Path:
    """Loss (train solid, validation dashed) and the shared validation metric of every run, one colour each."""
    from danlu.plots.figures import pyplot, save_figure

    histories = [metrics_history(r) for r in runs]
    metric = curve_metric(histories)
    plt = pyplot()
    fig, axes = plt.subplots(1, 2 if metric else 1, figsize=(11 if metric else 6, 4), squeeze=False)
    for i, (run, hist) in enumerate(zip(runs, histories, strict=True)):
        if not hist:
            continue
        color = f"C{i % 10}"
        epochs = [h["epoch"] for h in hist]
        label = run.name[-40:]
        axes[0][0].plot(epochs, [h.get("train_loss") for h in hist], "-", color=color, label=f"{label} train")
        if "val_loss" in hist[0]:
            axes[0][0].plot(epochs, [h.get("val_loss") for h in hist], "--", color=color, label=f"{label} val")
        if metric:
            axes[0][1].plot(epochs, [h.get(metric) for h in hist], "o-", color=color, label=label)
    axes[0][0].set(xlabel="epoch", ylabel="loss", title="loss (solid: train, dashed: validation)")
    if metric:
        axes[0][1].set(xlabel="epoch", ylabel=metric, title=metric)
    for a in axes[0]:
        a.grid(alpha=0.3)
        a.legend(fontsize=7)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, Path(path))
    return Path(path)


def render(result: dict[str, Any]) -> str:
    """The comparison as terminal text: one column per run, deltas against the first in brackets."""
    from danlu.printable import terminal_safe as safe

    runs = result["runs"]
    lines = [f"A = {runs[0]}"] + [f"{chr(66 + i) if i < 25 else i + 1} = {r}" for i, r in enumerate(runs[1:])]
    heads = ["A"] + [chr(66 + i) if i < 25 else str(i + 1) for i in range(len(runs) - 1)]
    lines.append("")
    lines.append(f"{'metric':<22}" + "".join(f"{h:>22}" for h in heads))
    for k, row in result["metrics"].items():
        cells = []
        for i, (v, d) in enumerate(zip(row["values"], row["deltas"], strict=True)):
            if v is None:
                cells.append(f"{'-':>22}")
            elif d is None or i == 0:
                cells.append(f"{v:>22.4f}")
            else:
                cells.append(f"{f'{v:.4f} ({d:+.4f})':>22}")
        lines.append(f"{k:<22}" + "".join(cells))
    diff = result["recipe_diff"]
    lines.append("")
    if not diff:
        lines.append("recipes: the same")
    else:
        lines.append("recipe differences:")
        for k, values in diff.items():
            lines.append(f"  {k}: " + "  |  ".join(f"{h}={safe(str(v))}" for h, v in zip(heads, values, strict=True)))
    return "\n".join(lines)
