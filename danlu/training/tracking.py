"""Tracking outlets: a run's metrics also go to TensorBoard or an MLflow server, as training callbacks.

The run folder stays the source of truth; an outlet is a copy for the tools teams already use.

- ``tensorboard``: event files in the run's ``tb/`` (tensorboardX, an optional extra: ``danlu[track]``):
  every epoch's metrics, the batch loss every ``train.track_every_steps`` steps when set, the test metrics
  with the recipe as hyperparameters (TensorBoard's HParams tab), and the run's figures.
  ``tensorboard --logdir runs`` then shows every run.
- ``mlflow``: a run in the experiment named after the recipe, on the server at ``MLFLOW_TRACKING_URI``
  (mlflow-skinny, an optional extra): the recipe as params, per-epoch metrics, test metrics, and the run
  folder (report, figures, weights; not the resumable checkpoint) as artifacts. A resumed run continues
  the same MLflow run (its id is kept in the run folder's ``mlflow.json``).

Neither library is imported unless a recipe asks for it: ``danlu --help`` and untracked training stay as
fast as before. A tracking server that stops answering mid-run costs a warning, never the training.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from danlu.errors import DanluError
from danlu.training.hooks import Callback

if TYPE_CHECKING:
    from danlu.training.hooks import Loop

log = logging.getLogger("danlu.training.tracking")
OUTLETS = ("tensorboard", "mlflow")


def flat_params(recipe: dict[str, Any]) -> dict[str, Any]:
    """The recipe as dotted keys with scalar values (lists as their text), what both outlets take as params."""
    from danlu.runs.compare import flatten

    out: dict[str, Any] = {}
    for k, v in flatten(recipe).items():
        if k.startswith("tune."):
            continue
        out[k] = v if isinstance(v, bool | int | float | str) else str(v)
    return out


class Tracker(Callback):
    """The moments an outlet needs: each epoch, optionally every N steps, and ``finish`` after evaluation."""

    def __init__(self, run_dir: Path, recipe: Any, every_steps: int = 0):
        self.run_dir, self.recipe, self.every_steps = Path(run_dir), recipe, every_steps
        self.seconds = 0.0  # time spent in this outlet's hooks: the benchmark reports it against training
        self._warned = False

    def _guard(self, what: str, fn: Any, *args: Any) -> None:
        t0 = time.perf_counter()
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001 - a tracking outage must not end the training
            if not self._warned:
                log.warning("%s: could not log %s (%s: %s); training goes on, the run folder has everything",
                            type(self).__name__, what, type(e).__name__, str(e)[:200])
                self._warned = True
        finally:
            self.seconds += time.perf_counter() - t0

    def after_step(self, loop: Loop, loss: float) -> None:
        if self.every_steps and loop.global_step % self.every_steps == 0:
            self._guard("a step", self.log_step, loop.global_step, loss)

    def on_epoch_end(self, loop: Loop, metrics: dict[str, float]) -> None:
        self._guard("an epoch", self.log_epoch, loop.epoch, metrics)

    def on_train_end(self, loop: Loop) -> None:
        if loop.error is not None:
            self._guard("the end", self.close, "KILLED" if isinstance(loop.error, KeyboardInterrupt) else "FAILED")

    def finish(self, report: dict[str, Any] | None, status: str) -> None:
        """After evaluation (``report``) or when the run ends without one (pruned, failed evaluation)."""
        if report is not None:
            self._guard("the report", self.log_report, report)
        self._guard("the end", self.close, "FINISHED" if status == "done" else "FAILED" if status == "failed"
                    else "KILLED")

    # the outlet's own part
    def log_step(self, step: int, loss: float) -> None: ...
    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None: ...
    def log_report(self, report: dict[str, Any]) -> None: ...
    def close(self, status: str) -> None: ...


class TensorBoardTracker(Tracker):
    def __init__(self, run_dir: Path, recipe: Any, every_steps: int = 0):
        super().__init__(run_dir, recipe, every_steps)
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise DanluError("train.track: tensorboard needs the tensorboardX package",
                             hint="pip install 'danlu[track]' (or pip install tensorboardX)") from None
        self.writer = SummaryWriter(logdir=str(self.run_dir / "tb"), flush_secs=10)
        self.closed = False

    def log_step(self, step: int, loss: float) -> None:
        self.writer.add_scalar("step/train_loss", loss, step)

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        for k, v in metrics.items():
            if k != "epoch" and isinstance(v, int | float):
                self.writer.add_scalar(f"epoch/{k}", v, epoch)

    def log_report(self, report: dict[str, Any]) -> None:
        from tensorboardX.summary import hparams

        metrics = {f"test/{k}": float(v) for k, v in report.get("metrics", {}).items() if isinstance(v, int | float)}
        exp, ssi, sei = hparams(flat_params(self.recipe.to_dict()), metrics)
        for summary in (exp, ssi, sei):
            self.writer.file_writer.add_summary(summary)
        for k, v in metrics.items():
            self.writer.add_scalar(k, v, 0)
        from PIL import Image
        from tensorboardX.proto.summary_pb2 import Summary

        # the figures' PNG bytes go in as they are: add_image decoded and re-encoded them, 85 ms of a 1.2 s
        # one-epoch mnist-mlp run (7 %); PIL reads only the header here
        for path in sorted((self.run_dir / "plots").glob("*.png")):
            data = path.read_bytes()
            with Image.open(path) as img:
                size, channels = img.size, {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}.get(img.mode, 3)
            image = Summary.Image(height=size[1], width=size[0], colorspace=channels, encoded_image_string=data)
            figure = Summary(value=[Summary.Value(tag=f"figures/{path.stem}", image=image)])
            self.writer.file_writer.add_summary(figure, 0)

    def close(self, status: str) -> None:
        if not self.closed:
            self.closed = True
            self.writer.close()


class MLflowTracker(Tracker):
    def __init__(self, run_dir: Path, recipe: Any, every_steps: int = 0):
        super().__init__(run_dir, recipe, every_steps)
        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            raise DanluError("train.track: mlflow needs MLFLOW_TRACKING_URI", hint="export MLFLOW_TRACKING_URI="
                             "http://127.0.0.1:5000 (the address of your MLflow tracking server)")
        # fail in seconds, not minutes of retries, when the server is down
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise DanluError("train.track: mlflow needs the mlflow-skinny package",
                             hint="pip install 'danlu[track]' (or pip install mlflow-skinny)") from None
        from danlu.runs.files import read_json, write_json

        self.client = MlflowClient(tracking_uri=uri)
        self.closed = False
        saved = self.run_dir / "mlflow.json"
        try:
            if saved.is_file():  # a resumed run goes on in its MLflow run
                self.run_id = read_json(saved)["run_id"]
                self.client.update_run(self.run_id, status="RUNNING")
                return
            name = recipe.name
            exp = self.client.get_experiment_by_name(name)
            exp_id = exp.experiment_id if exp is not None else self.client.create_experiment(name)
            run = self.client.create_run(exp_id, run_name=self.run_dir.name,
                                         tags={"danlu.run_folder": str(self.run_dir)})
        except DanluError:
            raise
        except Exception as e:  # noqa: BLE001 - mlflow's REST errors have several types
            raise DanluError(f"the MLflow server at {uri} did not take the run: {type(e).__name__}: {str(e)[:300]}",
                             hint="check MLFLOW_TRACKING_URI and that the server is running "
                                  "(mlflow server --backend-store-uri sqlite:///mlflow.db)") from None
        self.run_id = run.info.run_id
        write_json(saved, {"run_id": self.run_id, "tracking_uri": uri, "experiment_id": exp_id})
        self._log_params()

    def _log_params(self) -> None:
        from mlflow.entities import Param

        params = [Param(k[:250], str(v)[:6000]) for k, v in flat_params(self.recipe.to_dict()).items()]
        for i in range(0, len(params), 100):  # the REST API takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=params[i:i + 100])

    def _metrics(self, values: dict[str, Any], step: int, prefix: str = "") -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        rows = [Metric(f"{prefix}{k}", float(v), now, step) for k, v in values.items()
                if k != "epoch" and isinstance(v, int | float)]
        for i in range(0, len(rows), 1000):
            self.client.log_batch(self.run_id, metrics=rows[i:i + 1000])

    def log_step(self, step: int, loss: float) -> None:
        self._metrics({"step_train_loss": loss}, step)

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        self._metrics(metrics, epoch)

    def log_report(self, report: dict[str, Any]) -> None:
        self._metrics(report.get("metrics", {}), 0, prefix="test_")
        skip = {"checkpoints", "tb", ".lock"}
        for item in sorted(self.run_dir.iterdir()):
            if item.name in skip or item.name.startswith("."):
                continue
            if item.is_dir():
                self.client.log_artifacts(self.run_id, str(item), artifact_path=item.name)
            else:
                self.client.log_artifact(self.run_id, str(item))

    def close(self, status: str) -> None:
        if not self.closed:
            self.closed = True
            self.client.set_terminated(self.run_id, status=status)


def trackers(recipe: Any, run_dir: Path) -> list[Tracker]:
    """The outlets ``recipe.train.track`` names, ready to join the loop's callbacks."""
    made = {"tensorboard": TensorBoardTracker, "mlflow": MLflowTracker}
    every = getattr(recipe.train, "track_every_steps", 0)
    return [made[name](run_dir, recipe, every) for name in getattr(recipe.train, "track", [])]


def finish(callbacks: list[Any], report: dict[str, Any] | None, status: str) -> None:
    """Tell the outlets the run ended (after its test report, when there is one)."""
    for cb in callbacks:
        if isinstance(cb, Tracker):
            cb.finish(report, status)
