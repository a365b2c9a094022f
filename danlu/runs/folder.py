"""The run-folder protocol, written in one place: status, metrics, weights, training state, reports.

Everything a run leaves on disk goes through a ``RunFolder``: states are named (never inferred from
the text of a stored error), every write is atomic, and only the writing process writes: under
distributed training the other ranks get ``writer=False`` and every write becomes a no-op.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from danlu.errors import RunError
from danlu.runs.files import atomic_write_text, read_json, write_json
from danlu.runs.store import hold_run, new_run_dir

# training → evaluating → done; or failed / interrupted at any point; pruned when a search stopped it
STATES = ("training", "evaluating", "done", "failed", "interrupted", "pruned")
CHECKPOINT = Path("checkpoints") / "last.safetensors"
PARITY = "parity.safetensors"


class RunFolder:
    def __init__(self, path: Path, writer: bool = True):
        self.path, self.writer = Path(path), writer

    @classmethod
    def create(cls, recipe_name: str, root: Path | None = None, writer: bool = True) -> RunFolder:
        return cls(new_run_dir(recipe_name, root), writer)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r}, writer={self.writer})"

    # ------------------------------------------------------------ what a run starts with

    def write_setup(self, recipe: Any, schema: Any, env: dict[str, Any], artifacts: dict[str, Any]) -> None:
        """recipe.yaml, schema.json, env.json and the preprocessing files (vocab.json, tokenizer/)."""
        if not self.writer:
            return
        atomic_write_text(self.path / "recipe.yaml", recipe.to_yaml())
        atomic_write_text(self.path / "schema.json", schema.to_json())
        write_json(self.path / "env.json", env)
        for write in artifacts.values():
            write(self.path)

    def lock(self) -> Any:
        """Held while training: a second process training the same run is refused."""
        return hold_run(self.path) if self.writer else _NoLock()

    # ------------------------------------------------------------ status

    def set_status(self, state: str, **fields: Any) -> None:
        if state not in STATES:
            raise ValueError(f"unknown run state {state!r}; one of {STATES}")
        if self.writer:
            write_json(self.path / "status.json", {"status": state, **fields})

    def update_status(self, state: str, **fields: Any) -> None:
        """Like ``set_status`` but keeps the fields already there (except a stale error)."""
        old = {k: v for k, v in self.status().items() if k not in ("status", "error", "failed_in")}
        self.set_status(state, **{**old, **fields})

    def status(self) -> dict[str, Any]:
        """status.json; {"status": "?"} when absent, "damaged" (with the reason) when unreadable."""
        path = self.path / "status.json"
        if not path.exists():
            return {"status": "?"}
        try:
            data = read_json(path)
        except RunError as e:
            return {"status": "damaged", "error": e.message}
        if not isinstance(data, dict) or not isinstance(data.get("status"), str):
            return {"status": "damaged", "error": f"{path} is not a status object"}
        return data

    # ------------------------------------------------------------ metrics.jsonl

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def append_metrics(self, row: dict[str, Any]) -> None:
        if self.writer:
            with self.metrics_path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")

    def rewrite_metrics(self, history: list[dict[str, Any]]) -> None:
        """metrics.jsonl exactly as ``history`` (a resumed run may have logged an epoch its checkpoint never saw)."""
        if self.writer:
            atomic_write_text(self.metrics_path, "".join(json.dumps(h) + "\n" for h in history))

    def history(self) -> list[dict[str, Any]]:
        from danlu.runs.store import metrics_history

        return metrics_history(self.path)

    # ------------------------------------------------------------ weights and training state

    @property
    def model_path(self) -> Path:
        return self.path / "model.safetensors"

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT

    def save_model(self, model: Any, info: dict[str, Any]) -> None:
        from danlu.runs.checkpoint import save_model

        if self.writer:
            save_model(self.model_path, model, info)

    def load_model(self, model: Any) -> None:
        from danlu.runs.checkpoint import load_model_weights

        load_model_weights(self.model_path, model)

    def save_state(self, model: Any, optimizer: Any, scheduler: Any, generator: Any, info: dict[str, Any]) -> None:
        from danlu.runs.checkpoint import save_training_state

        if self.writer:
            save_training_state(self.checkpoint_path, model, optimizer, scheduler, generator, info)

    def load_state(self, model: Any, optimizer: Any, scheduler: Any, generator: Any) -> dict[str, Any]:
        from danlu.runs.checkpoint import load_training_state

        return load_training_state(self.checkpoint_path, model, optimizer, scheduler, generator)

    # ------------------------------------------------------------ reports and the parity sample

    def write_report(self, name: str, report: dict[str, Any], markdown: str) -> None:
        if self.writer:
            write_json(self.path / f"{name}.json", report)
            atomic_write_text(self.path / f"{name}.md", markdown)

    def save_parity(self, inputs: Any, outputs: Any) -> None:
        """A few test inputs with the model's outputs: export checks ONNX against them when the data is gone."""
        from danlu.runs.files import save_tensors

        if self.writer:
            save_tensors(self.path / PARITY, {"inputs": inputs, "outputs": outputs},
                         metadata={"danlu": json.dumps({"samples": int(len(inputs))})})

    def load_parity(self) -> tuple[Any, Any] | None:
        from safetensors.torch import load_file

        path = self.path / PARITY
        if not path.is_file():
            return None
        try:
            t = load_file(str(path))
            return t["inputs"], t["outputs"]
        except Exception as e:  # safetensors' own error types for a damaged file
            raise RunError(f"{path} is damaged ({type(e).__name__}: {str(e)[:120]})",
                           hint="delete it and export with the run's training data in place") from None


def load_schema(path: Path) -> Any:
    """A run's schema.json, validated: a damaged or hand-edited one is a RunError that names it."""
    from danlu.schema import Schema

    return Schema.from_dict(read_json(path), source=path)


def run_summary(run: Path) -> dict[str, Any]:
    """Recipe name, status, and test metrics of a run, for ``danlu runs``; a damaged status.json or
    report.json makes this run "damaged" (with the reason) and leaves the other runs listed."""
    from danlu.runs.files import check_run_file

    out: dict[str, Any] = {"run": run.name, "metrics": {}}
    out.update(RunFolder(run).status())
    try:  # sound without parsing it (a listing of hundreds of runs): regular, in the folder, bounded
        check_run_file(run / "recipe.yaml", within=run, bounded=True)
    except RunError as e:
        out.update(status="damaged", error=e.message)
        return out
    report = run / "report.json"
    if report.exists():
        try:
            data = read_json(report)
            metrics = data.get("metrics", {}) if isinstance(data, dict) else None
            if not isinstance(metrics, dict):
                raise RunError(f"{report} is damaged: no metrics object")
            out["metrics"] = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
        except RunError as e:
            out.update(status="damaged", error=e.message)
    return out


class _NoLock:
    def __enter__(self) -> _NoLock:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None
