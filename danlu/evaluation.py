"""Evaluate a trained model on a split → report.json, report.md and plots in the run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from danlu.metrics import headline
from danlu.recipe import Recipe
from danlu.runs.folder import RunFolder
from danlu.schema import Schema


def report_name(split: str) -> str:
    return "report" if split == "test" else f"report-{split}"


def build_report(metrics: dict, schema: Schema, split: str, n: int, extra: dict[str, Any]) -> dict[str, Any]:
    report: dict[str, Any] = {"split": split, "samples": n, "task": schema.task, "metrics": headline(metrics)}
    report["metrics"].pop("loss", None)
    if schema.task == "classification":
        classes = schema.classes or []
        report["classes"] = classes
        report["per_class"] = {c: {"precision": metrics["per_class_precision"][i],
                                   "recall": metrics["per_class_recall"][i], "f1": metrics["per_class_f1"][i],
                                   "support": metrics["support"][i]} for i, c in enumerate(classes)}
        report["confusion_matrix"] = metrics["confusion_matrix"]
    report.update(extra)
    return report


def report_markdown(report: dict[str, Any], recipe: Recipe) -> str:
    """report.md; names from the data (classes, notes, the recipe's own names) pass ``markdown_text``, so
    a class called ``a|b`` or one holding a newline or an ANSI escape cannot break the tables."""
    from danlu.printable import markdown_text as md

    lines = [f"# {md(recipe.name)}: {md(report['split'])} report", "",
             f"{report['samples']} samples, {report['task']}, model `{md(recipe.model.name)}`, "
             f"data `{md(recipe.data.name)}`.", "", "| metric | value |", "| --- | --- |"]
    lines += [f"| {k} | {v:.4f} |" for k, v in report["metrics"].items()]
    if "per_class" in report and len(report["per_class"]) <= 50:
        lines += ["", "| class | precision | recall | f1 | support |", "| --- | --- | --- | --- | --- |"]
        lines += [f"| {md(c)} | {m['precision']:.4f} | {m['recall']:.4f} | {m['f1']:.4f} | {m['support']} |"
                  for c, m in report["per_class"].items()]
    for note in report.get("notes", []):
        lines.append(f"\n- {md(note)}")
    if "privacy" in report:
        lines += _privacy_lines(report["privacy"])
    plots = report.get("plots", [])
    if plots:
        lines += ["", *[f"![{Path(p).stem}]({p})" for p in plots]]
    return "\n".join(lines) + "\n"


def evaluate(run: RunFolder | Path, recipe: Recipe, schema: Schema, model: torch.nn.Module, split_data: Any,
             split: str = "test", notes: list[str] | None = None, plots: bool = True,
             parity: bool = False, score: Any = None) -> dict[str, Any]:
    """Score ``model`` on one split and write the report and figures into the run folder; with ``parity``,
    also keep a few of the split's inputs and outputs for checking exports when the data is gone.
    ``score(model, loader, schema)`` replaces ``evaluate_loader`` (distributed runs score across processes)."""
    from danlu.inference import evaluate_loader, make_loader, place_model, predict, select_device
    from danlu.plots import worker as plot_worker
    from danlu.runs.folder import RunFolder

    run = run if isinstance(run, RunFolder) else RunFolder(Path(run))
    run_dir = run.path
    pdir = run_dir / "plots"
    plot_files: list[str] = []
    history = run.history()
    if plots and history:  # first, so a drawing helper works on it while the split is scored
        plot_worker.draw("learning_curves", history, pdir / "learning_curves.png")
        plot_files.append("plots/learning_curves.png")
    device = select_device(recipe.train.device)
    channels_last = place_model(model, schema, device, recipe.train.channels_last)
    loader = make_loader(split_data, schema, recipe, train=False, generator=None, device=device,
                         channels_last=channels_last)
    metrics = (score or evaluate_loader)(model, loader, schema)
    extra: dict[str, Any] = {"run": str(run_dir), "recipe": recipe.name, "model": recipe.model.name}
    if history:
        extra["epochs"] = len(history)
    best_epoch = run.status().get("best_epoch")
    if best_epoch is not None:
        extra["best_epoch"] = best_epoch
    if notes:
        extra["notes"] = list(notes)
    if run.status().get("privacy"):  # a DP run: its ε, δ and accounting (danlu/training/privacy.py)
        extra["privacy"] = run.status()["privacy"]
    if parity and len(split_data):
        _save_parity_sample(run, model, schema, recipe, split_data)
    if plots and schema.task == "classification":
        plot_worker.draw("confusion_matrix", metrics["confusion_matrix"], schema.classes or [],
                         pdir / f"confusion_{split}.png")
        plot_files.append(f"plots/confusion_{split}.png")
        if schema.kind == "image" and len(split_data):
            shown, grid = _grid_images(split_data)
            grid_loader = make_loader(shown, schema, recipe, train=False, generator=None, device=device,
                                      channels_last=channels_last)
            _, preds, y = predict(model, grid_loader, schema)
            classes = schema.classes or []
            plot_worker.draw("prediction_grid", grid, [classes[int(i)] for i in y],
                             [classes[int(i)] for i in preds.argmax(1)], pdir / f"predictions_{split}.png")
            plot_files.append(f"plots/predictions_{split}.png")
    for name, error in plot_worker.finish().items():
        plot_files = [f for f in plot_files if Path(f).name != name]
        extra.setdefault("notes", []).append(f"figure {name} could not be drawn ({error[:200]})")
    extra["plots"] = plot_files
    report = build_report(metrics, schema, split, len(split_data), extra)
    run.write_report(report_name(split), report, report_markdown(report, recipe))
    return report


PARITY_SAMPLES = 256


def _save_parity_sample(run: RunFolder, model: torch.nn.Module, schema: Schema, recipe: Recipe,
                        split_data: Any) -> None:
    """The first 256 (readable) samples as model-ready CPU inputs and the model's outputs (postprocessed,
    as Predictor.forward gives them): export's parity check when the data has moved."""
    from danlu.inference import make_loader
    from danlu.tasks import to_predictions

    sub = _grid_images(split_data, PARITY_SAMPLES)[0] if schema.kind == "image" else _first(split_data,
                                                                                            PARITY_SAMPLES)
    loader = make_loader(sub, schema, recipe, train=False, generator=None, device=torch.device("cpu"),
                         channels_last=False)
    xs = [x.contiguous() for x, _ in loader]
    if not xs:
        return
    if schema.kind == "text":  # batches are trimmed to their longest text: pad them to one length
        longest = max(x.shape[1] for x in xs)
        pad = int(schema.text.get("pad_id", 0))
        xs = [torch.nn.functional.pad(x, (0, longest - x.shape[1]), value=pad) for x in xs]
    inputs = torch.cat(xs)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with torch.no_grad():
        outputs = torch.cat([to_predictions(model(inputs[i:i + 64].to(device)), schema).cpu()
                             for i in range(0, len(inputs), 64)])
    model.train(was_training)
    run.save_parity(inputs, outputs)


def _first(split_data: Any, n: int) -> Any:
    return split_data.subset(torch.arange(min(n, len(split_data))))


def _grid_images(split_data: Any, n: int = 25) -> tuple[Any, np.ndarray]:
    """The first ``n`` (readable) samples, and their pixels as uint8 [N, C, H, W] for the figure."""
    if hasattr(split_data, "readable"):
        return split_data.readable(n)
    sub = _first(split_data, n)
    return sub, sub.x.numpy()


def _privacy_lines(privacy: dict[str, Any]) -> list[str]:
    """report.md's privacy section, from the summary DP training left in status.json (training/privacy.py)."""
    p = privacy
    lines = ["", "## Differential privacy", "",
             (f"ε = {p['epsilon']:.3f}" if p["epsilon"] is not None else "ε = ∞ (no noise: no privacy guarantee)")
             + f" at δ = {p['delta']:.3g} ({p['accountant'].upper()} accountant, "
             f"Opacus {p['opacus']}), after {p['steps']} steps"
             + (f" of {p['planned_steps']} planned" if p["steps"] != p["planned_steps"] else "") + ".", "",
             "| quantity | value |", "| --- | --- |",
             f"| noise multiplier σ | {p['noise_multiplier']:.4f} |",
             f"| sampling rate q (Poisson) | {p['sample_rate']:.5f} |",
             f"| steps | {p['steps']} |",
             f"| clipping norm C | {p['max_grad_norm']:g} |",
             f"| expected batch | {p['expected_batch_size']} of {p['n_train']} |", "",
             f"Guarantee: {p['guarantee']}.", "", "Not covered by this guarantee:", ""]
    lines += [f"- {item}" for item in p["not_covered"]]
    lines += [f"- note: {n.removeprefix('privacy: ')}" for n in p.get("notes", [])]
    return lines
