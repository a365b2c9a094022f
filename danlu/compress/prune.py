"""``danlu compress RUN --prune F``: remove a fraction of channels/units, fine-tune, write a new run.

Structural pruning with Torch-Pruning: it follows the dependencies between layers (a conv's output
channels, the BatchNorm after it, the flattened features the next Linear reads), so removing a channel
really shrinks every tensor it touches and the model gets faster. ``torch.nn.utils.prune`` only masks
weights and buys no speed. Channels are ranked by the L2 norm of their weights (magnitude importance).

The pruned widths go into the new run's recipe (``model.channels`` / ``model.hidden``), so the new run is
rebuilt from its recipe like any other: predicted, exported, quantized and served the same way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from danlu.errors import DanluError
from danlu.training.hooks import Callback

PRUNABLE = ("mlp", "cnn", "simple_cnn")  # models whose every width is a recipe option


@dataclass
class PruneResult:
    source: Path
    run: Path
    before: dict[str, Any]
    after: dict[str, Any]
    metrics: dict[str, float]
    table: str
    variants: list[Any]
    seconds: float

    def as_json(self) -> dict[str, Any]:
        return {"source": str(self.source), "run": str(self.run), "before": self.before, "after": self.after,
                "metrics": self.metrics, "variants": [v.as_json() for v in self.variants],
                "seconds": round(self.seconds, 2)}


def check_fraction(fraction: float) -> None:
    if not 0 < fraction < 1:
        raise DanluError(f"--prune is the fraction of channels to remove, strictly between 0 and 1; got {fraction:g}",
                         hint="e.g. --prune 0.5 removes half of every prunable layer's channels")


def widths(name: str, model: Any) -> dict[str, Any]:
    """The model's layer sizes as its recipe options: every Linear/Conv width but the output layer's."""
    from torch import nn

    linears = [m.out_features for m in model.modules() if isinstance(m, nn.Linear)][:-1]
    convs = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    if name == "mlp":
        return {"hidden": linears}
    if name == "cnn":
        return {"channels": convs, "hidden": linears}
    return {"channels": convs[0], "hidden": linears[0]}  # simple_cnn: one conv, one hidden layer


def prune_model(model: Any, example: Any, fraction: float) -> Any:
    """Remove ``fraction`` of every hidden layer's channels/units in place (the output layer keeps its size)."""
    import torch
    import torch_pruning as tp
    from torch import nn

    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    model.eval()
    pruner = tp.pruner.MetaPruner(model, example, importance=tp.importance.MagnitudeImportance(p=2),
                                  pruning_ratio=fraction, ignored_layers=[last])
    with torch.no_grad():
        pruner.step()
    return model


def prune_run(run: str | Path, fraction: float, *, finetune_epochs: float = 1, threads: int = 1,
              runs_dir: Path | None = None, data_dir: Path | None = None, progress: bool = True,
              say: Any = print) -> PruneResult:
    """Prune the run's model, fine-tune it with the run's own recipe, and write a new run folder with lineage."""
    from danlu.compress.lineage import write_lineage
    from danlu.export import weights_digest
    from danlu.predictor import Predictor
    from danlu.recipe import load_recipe
    from danlu.runs.store import new_run_dir

    check_fraction(fraction)
    if finetune_epochs < 0:
        raise DanluError(f"--finetune-epochs must be 0 or more, got {finetune_epochs:g}")
    t0 = time.perf_counter()
    source = Predictor.load(run, runs_dir)
    name = source.recipe.model.name
    if name not in PRUNABLE:
        raise DanluError(f"structural pruning supports the models {', '.join(PRUNABLE)}, not '{name}'",
                         hint="quantize it instead: danlu compress RUN --quantize int8")
    from danlu.compress.data import load_test_set

    test = load_test_set(source, data_dir, say)
    before = widths(name, source.model)
    baseline = Predictor.load(source.run_dir)  # an unpruned copy for the table
    model = prune_model(source.model, test.batches[0][:2], fraction)
    after = widths(name, model)
    if after == before:
        raise DanluError(f"pruning {fraction:g} removed no channel of {before} (layers too narrow to prune)",
                         hint="prune a larger fraction")
    say(f"pruned {100 * fraction:g} % of the channels/units: {before} → {after}")
    raw = source.recipe.to_dict()
    raw["name"] = f"{source.recipe.name}-pruned{round(100 * fraction)}"
    raw["description"] = (f"{source.recipe.name} with {100 * fraction:g} % of its channels removed "
                          f"(danlu compress --prune), fine-tuned {finetune_epochs:g} epoch(s)")
    raw["model"] = {**raw["model"], **after}
    raw.pop("tune", None)  # the source's search space is for the unpruned widths
    if finetune_epochs:
        raw["train"] = {**raw["train"], "epochs": finetune_epochs}
    recipe = load_recipe(base=raw).with_absolute_paths()
    folder = new_run_dir(recipe.name, runs_dir or source.run_dir.parent)
    write_lineage(folder, {"method": "prune", "source": str(source.run_dir),
                           "source_weights_sha256": weights_digest(source.run_dir), "model": name,
                           "fraction": fraction, "importance": "L2 magnitude (Torch-Pruning)",
                           "finetune_epochs": finetune_epochs, "before": before, "after": after})
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    try:
        if finetune_epochs:
            from danlu.api import train

            result = train(recipe, runs_dir=runs_dir, data_dir=data_dir, progress=progress, run_dir=folder,
                           callbacks=[StartFrom(state)])
            metrics = result.metrics
        else:
            metrics = _save_unchanged(recipe, state, folder, data_dir)
    except BaseException:
        _drop_if_unstarted(folder)
        raise
    from danlu.compress.compare import compare_runs

    variants, table = compare_runs(baseline, Predictor.load(folder), test, threads,
                                   f"pruned {100 * fraction:g} %" + (f" + {finetune_epochs:g} epoch(s)"
                                                                      if finetune_epochs else ""))
    return PruneResult(source.run_dir, folder, before, after, metrics, table, variants, time.perf_counter() - t0)


def _drop_if_unstarted(folder: Path) -> None:
    """A new run refused before it started (no status.json yet: only its lineage was written) leaves no
    folder behind; one that started stays, marked failed, for ``danlu runs`` to show."""
    import shutil

    if folder.is_dir() and not (folder / "status.json").exists():
        shutil.rmtree(folder, ignore_errors=True)


class StartFrom(Callback):
    """A training callback that starts from given weights (the pruned ones) instead of a fresh init."""

    def __init__(self, state: dict[str, Any]):
        self.state = state

    def on_train_start(self, loop: Any) -> None:
        loop.model.load_state_dict(self.state)  # copied into the parameters the optimizer already holds


def _save_unchanged(recipe: Any, state: dict[str, Any], folder: Path, data_dir: Path | None) -> dict[str, float]:
    """No fine-tuning: the pruned weights as a finished run (setup files, weights, test report)."""
    from danlu.evaluation import evaluate
    from danlu.prepare import prepare
    from danlu.runs.folder import RunFolder
    from danlu.runs.lifecycle import environment, finish_run

    splits, schema, model = prepare(recipe, data_dir, for_inference=True)
    model.load_state_dict(state)
    run = RunFolder(folder)
    run.write_setup(recipe, schema, environment("cpu"), splits.artifacts)
    run.set_status("evaluating", epochs=0)
    run.save_model(model, {"epoch": 0, "pruned": True})
    report = evaluate(run, recipe, schema, model, splits.test, "test", parity=True, plots=False)
    finish_run(run, "done", epochs=0)
    return report["metrics"]
