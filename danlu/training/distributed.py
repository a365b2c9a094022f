"""Data-parallel training on torch.distributed: one process per rank, DistributedDataParallel, gloo or NCCL.

The loop stays the one-process loop (training.fit); this module only changes what each process sees:

- ``train.batch_size`` is the GLOBAL batch. Every rank draws the same epoch permutation (same seed, same
  generator) and takes its contiguous part of each global batch, so an epoch covers the data once and the
  step count (and with it the LR schedule) is the one-process run's.
- Gradients are summed with weights ``n_rank / n_global`` (a DDP comm hook): the averaged gradient is the
  one-process gradient of the same global batch even when the parts differ by a sample.
- Validation and test splits are scored over the whole split: each rank scores its part, the confusion
  matrix and the loss sums are all-reduced (regression gathers the predictions, R² needs them all).
- Rank 0 alone writes the run folder; the others hold ``RunFolder(writer=False)``.

Launch: ``danlu train RECIPE --nproc N`` (danlu/training/launch.py), ``torchrun ... -m danlu train
RECIPE``, or ``srun`` (SLURM_PROCID/SLURM_NTASKS with MASTER_ADDR/MASTER_PORT exported).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from danlu.errors import DanluError, RunError
from danlu.training.hooks import Callback

TIMEOUT_ENV = "DANLU_DIST_TIMEOUT_S"  # how long a collective waits for a silent peer (default 300 s)
RUN_FILE_ENV = "DANLU_DIST_RUN_FILE"  # where rank 0 tells the --nproc launcher its run folder


@dataclass(frozen=True)
class World:
    """Where this process stands: its rank among ``size`` processes, and its rank on this machine."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    source: str = "one process"  # torchrun or SLURM

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world_from_env(env: dict[str, str] | None = None) -> World:
    """torchrun's RANK/WORLD_SIZE/LOCAL_RANK, or srun's SLURM_PROCID/SLURM_STEP_NUM_TASKS/SLURM_LOCALID."""
    env = os.environ if env is None else env
    try:
        if "WORLD_SIZE" in env and "RANK" in env:
            return World(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)), "torchrun")
        # SLURM_STEP_NUM_TASKS is set by srun for its step, not in the batch script itself, so a plain
        # `danlu train` inside an sbatch script stays one process
        if "SLURM_PROCID" in env and int(env.get("SLURM_STEP_NUM_TASKS", "1")) > 1:
            return World(int(env["SLURM_PROCID"]), int(env["SLURM_STEP_NUM_TASKS"]),
                         int(env.get("SLURM_LOCALID", 0)), "SLURM")
    except ValueError as e:
        raise DanluError(f"the launcher's rank variables are not numbers ({e})",
                         hint="launch with torchrun or srun, or unset RANK/WORLD_SIZE") from None
    return World()


def timeout_s() -> float:
    raw = os.environ.get(TIMEOUT_ENV, "300")
    try:
        value = float(raw)
    except ValueError:
        raise DanluError(f"{TIMEOUT_ENV}={raw} is not a number of seconds", hint=f"e.g. {TIMEOUT_ENV}=300") from None
    if value <= 0:
        raise DanluError(f"{TIMEOUT_ENV} must be positive, got {raw}")
    return value


class Group:
    """The process group of a distributed run and what it changes in one process's training."""

    def __init__(self, world: World, device: torch.device, timeout: float):
        self.world, self.device, self.timeout = world, device, timeout
        self.rank, self.size = world.rank, world.size

    @property
    def writer(self) -> bool:
        return self.rank == 0

    def describe(self) -> dict[str, Any]:
        return {"processes": self.size, "backend": dist.get_backend(), "launcher": self.world.source}

    # ---------------------------------------------------------------- the run folder

    def open_run(self, create: Callable[[], Any]) -> Any:
        """Rank 0 creates the run folder (``create()``); every other rank gets its path, read-only."""
        from danlu.runs.folder import RunFolder

        run = create() if self.writer else None
        path = self._broadcast_text(str(run.path) if run is not None else "")
        if self.writer and os.environ.get(RUN_FILE_ENV):
            from danlu.runs.files import atomic_write_text

            atomic_write_text(os.environ[RUN_FILE_ENV], path)
        return run if run is not None else RunFolder(path, writer=False)

    def _broadcast_text(self, text: str) -> str:
        data = torch.tensor(list(text.encode()), dtype=torch.uint8)
        size = torch.tensor([len(data)], dtype=torch.int64)
        dist.broadcast(size, 0)
        buf = data if self.writer else torch.empty(int(size), dtype=torch.uint8)
        dist.broadcast(buf, 0)
        return bytes(buf.tolist()).decode()

    # ---------------------------------------------------------------- training

    def wrap(self, loop: Any) -> Any:
        """Shard the training loader, wrap the step's model in DDP, score val across ranks."""
        from danlu.training.optim import build_schedule

        sharded = ShardedLoader(loop.train_loader, self.rank, self.size)
        ddp = nn.parallel.DistributedDataParallel(
            loop.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        ddp.register_comm_hook(sharded, _weighted_sum_hook)
        loop.step.model = ddp  # the loop keeps the plain model: its checkpoints have no "module." prefix
        loop.train_loader = sharded
        if len(sharded) != loop.steps_per_epoch:  # a global batch too small to share was merged
            cfg = loop.recipe.train
            loop.steps_per_epoch, loop.total_steps = len(sharded), cfg.total_steps(len(sharded))
            loop.scheduler = build_schedule(loop.optimizer, cfg, len(sharded))
        loop.evaluate = self.evaluate
        loop.sum_across = self.sum_floats
        loop.callbacks.insert(0, RankSeeds(loop.recipe.seed, self.rank))
        return loop

    def sum_floats(self, values: list[float]) -> list[float]:
        t = torch.tensor(values, dtype=torch.float64, device=self._comm_device)
        dist.all_reduce(t)
        out = t.tolist()
        return [int(v) if isinstance(x, int) else v for x, v in zip(values, out, strict=True)]

    @property
    def _comm_device(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")

    def load_best(self, run: Any, model: nn.Module) -> None:
        """The best weights on every rank: rank 0 reads model.safetensors and broadcasts them (the other
        ranks may be on machines that do not see the run folder)."""
        if self.writer:
            run.load_model(model)
        with torch.no_grad():
            for t in model.state_dict().values():
                buf = t.to(self._comm_device)
                dist.broadcast(buf, 0)
                if buf is not t:
                    t.copy_(buf)

    # ---------------------------------------------------------------- evaluation

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: Any, schema: Any, amp: torch.dtype | None = None) -> dict:
        """The metrics of the whole split, as evaluate_loader gives them in one process: each rank scores
        a contiguous part; classification all-reduces the confusion matrix and the loss sum, regression
        gathers the predictions (R² needs the mean of every target)."""
        from danlu.inference import predict
        from danlu.metrics import classification_metrics, confusion_matrix
        from danlu.tasks import loss_fn, score, to_predictions

        batches = loader.batches()
        order = torch.cat(batches) if batches else torch.empty(0, dtype=torch.long)
        mine = [b for b in order.tensor_split(self.size)[self.rank].split(loader.batch_size) if len(b)]
        out, _, y = predict(model, _Batches(loader, mine), schema, amp)
        if schema.task == "classification":
            c = schema.num_outputs
            y = y.long() if len(y) else torch.empty(0, dtype=torch.long)
            preds = out.argmax(1) if len(out) else torch.empty(0, dtype=torch.long)
            cm = confusion_matrix(y.cpu(), preds.cpu(), c).to(self._comm_device)
            sums = torch.tensor([float(loss_fn(schema)(out, y)) * len(y) if len(y) else 0.0, float(len(y))],
                                dtype=torch.float64, device=self._comm_device)
            dist.all_reduce(cm)
            dist.all_reduce(sums)
            if sums[1] == 0:
                return {}
            cm = cm.cpu()
            metrics = classification_metrics(cm)
            metrics["confusion_matrix"] = cm.tolist()
            metrics["loss"] = float(sums[0] / sums[1])
            return metrics
        width = schema.num_outputs
        out = self._gather_rows(out.reshape(len(out), width) if len(out) else torch.empty(0, width))
        y = self._gather_rows(y.float().reshape(len(y), -1) if len(y) else torch.empty(0, width))
        if len(y) == 0:
            return {}
        metrics = score(to_predictions(out, schema), y, schema)
        metrics["loss"] = float(loss_fn(schema)(out, y))
        return metrics

    def _gather_rows(self, t: torch.Tensor) -> torch.Tensor:
        """Every rank's rows, in rank order (float32 [n_rank, k] each, n_rank may differ)."""
        t = t.float().to(self._comm_device)
        sizes = [torch.zeros(1, dtype=torch.int64, device=self._comm_device) for _ in range(self.size)]
        dist.all_gather(sizes, torch.tensor([len(t)], dtype=torch.int64, device=self._comm_device))
        longest = max(int(s) for s in sizes)
        padded = torch.zeros(longest, t.shape[1], device=self._comm_device)
        padded[: len(t)] = t
        parts = [torch.empty_like(padded) for _ in range(self.size)]
        dist.all_gather(parts, padded)
        return torch.cat([p[: int(s)] for p, s in zip(parts, sizes, strict=True)]).cpu()

    # ---------------------------------------------------------------- failures

    def explain(self, error: BaseException, run: Any) -> BaseException:
        """A collective that failed because a peer died or went silent, as a RunError saying how to resume."""
        if isinstance(error, DanluError | KeyboardInterrupt) or not _is_comm_error(error):
            return error
        err = RunError(f"another process of this {self.size}-process run stopped or stopped answering "
                       f"(rank {self.rank} saw: {_short(error)})",
                       hint=f"the run folder keeps its last finished epoch: danlu train --resume {run.path} "
                            f"--nproc {self.size} (or relaunch the same torchrun/srun command with --resume)")
        err.__cause__ = error
        return err

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()


def _short(error: BaseException) -> str:
    """The gist of a backend's error: "Read error [127.0.0.1]:47237: Connection reset by peer", without the
    future-callback wrapping and the C++ source location."""
    import re

    text = str(error).strip() or type(error).__name__
    text = re.sub(r"^(Got the following error when running the callback: )?(\w+Error: )?", "", text)
    text = re.sub(r"\[[^\]]*\.(cc|cpp|h):\d+\] ", "", text)
    return text.split(". ")[0].splitlines()[0][:200]


def _is_comm_error(error: BaseException) -> bool:
    kinds = tuple(k for k in (getattr(dist, "DistError", None),) if k is not None)
    text = str(error).lower()
    return isinstance(error, kinds) or any(s in text for s in (
        "connection closed", "connection reset", "timed out", "timeout", "gloo", "nccl", "broken pipe"))


class _Batches:
    """Index batches of a loader, iterated as (x, y) on its device (what inference.predict reads)."""

    def __init__(self, loader: Any, batches: list[torch.Tensor]):
        self.loader, self.batches, self.device = loader, batches, loader.device

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return iter(self.loader.iterate(self.batches)) if self.batches else iter(())


def merge_small(batches: list[torch.Tensor], world: int) -> list[torch.Tensor]:
    """A global batch with fewer samples than processes joins the one before it: every rank then trains
    on at least one sample each step (DDP needs every rank in every step)."""
    out: list[torch.Tensor] = []
    for b in batches:
        if len(b) < world and out:
            out[-1] = torch.cat([out[-1], b])
        else:
            out.append(b)
    if len(out) > 1 and len(out[0]) < world:
        out[:2] = [torch.cat(out[:2])]
    return out


class ShardedLoader:
    """One rank's part of each global batch of a TensorLoader or StreamLoader.

    Every rank draws the same permutation from the same generator; augmentation draws from a generator of
    the rank's own, seeded from the shared one, so the shared one stays identical across ranks (and in
    the checkpoint rank 0 writes). ``share`` is this rank's fraction of the batch being trained.
    """

    def __init__(self, inner: Any, rank: int, world: int):
        self.inner, self.rank, self.world = inner, rank, world
        self.device, self.batch_size = inner.device, inner.batch_size
        self.share = 1.0 / world
        saved = inner.generator  # batch sizes do not depend on the permutation: count them on a throwaway one
        inner.generator = torch.Generator().manual_seed(0)
        try:
            self._count = len(merge_small(inner.batches(), world))
        finally:
            inner.generator = saved

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        batches = merge_small(self.inner.batches(), self.world)
        augment = None
        if getattr(self.inner, "augment", None) is not None:
            seed = int(torch.randint(2**62, (1,), generator=self.inner.generator))
            augment = torch.Generator().manual_seed(seed + self.rank)
        parts = [b.tensor_split(self.world)[self.rank] for b in batches]
        for b, (x, y) in zip(batches, self.inner.iterate(parts, augment), strict=False):
            self.share = len(y) / len(b)
            yield x, y


def _weighted_sum_hook(loader, bucket):  # no annotations: DDP checks them (as strings here, they fail)
    """Sum of gradients weighted by each rank's share of the global batch: the mean-loss gradient of the
    whole batch (DDP's default averages, which is exact only for equal parts)."""
    grads = bucket.buffer()
    grads.mul_(loader.share)
    return dist.all_reduce(grads, async_op=True).get_future().then(lambda fut: fut.value()[0])


class RankSeeds(Callback):
    """Each epoch, each rank's global RNG (dropout) from (seed, epoch, rank): different masks on different
    ranks, and a resumed run draws what an uninterrupted one would whatever rank 0's checkpoint holds."""

    def __init__(self, seed: int, rank: int):
        self.seed, self.rank = seed, rank

    def on_epoch_start(self, loop: Any, steps: int) -> None:
        torch.manual_seed(((self.seed * 1_000_003 + loop.epoch) * 4099 + self.rank) % (2**63))


# ---------------------------------------------------------------- joining the group


def start(recipe: Any) -> Group | None:
    """Join the process group when launched as one of several processes (torchrun, srun, --nproc);
    None in a plain one-process run. Sets the threads and, with train.device auto/cuda, LOCAL_RANK's GPU."""
    world = world_from_env()
    if not world.distributed:
        return None
    cfg = recipe.train
    cuda = cfg.device in ("auto", "cuda") and torch.cuda.is_available()
    if cuda:
        if world.local_rank >= torch.cuda.device_count():
            raise DanluError(f"LOCAL_RANK {world.local_rank} but this machine has {torch.cuda.device_count()} "
                             "GPU(s)", hint="start at most one process per GPU (--nproc-per-node)")
        torch.cuda.set_device(world.local_rank)
        device = torch.device("cuda", world.local_rank)
    elif cfg.device.startswith("cuda"):
        device = torch.device(cfg.device)
    else:
        device = torch.device("cpu")
    if device.type == "cpu":  # torchrun's default: one thread each, N processes share the cores
        torch.set_num_threads(cfg.threads or int(os.environ.get("OMP_NUM_THREADS") or 1))
    if world.source == "SLURM":
        os.environ.setdefault("MASTER_PORT", "29500")
        if "MASTER_ADDR" not in os.environ:
            raise DanluError("under srun danlu needs MASTER_ADDR: the host of the first task",
                             hint="export MASTER_ADDR=$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | head -n 1)")
    addr = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
    if "MASTER_ADDR" not in os.environ or "MASTER_PORT" not in os.environ:
        raise DanluError(f"RANK/WORLD_SIZE are set but the rendezvous address is not ({addr})",
                         hint="launch with torchrun (it sets MASTER_ADDR and MASTER_PORT) or export both")
    seconds = timeout_s()
    backend = "nccl" if device.type == "cuda" else "gloo"
    try:
        dist.init_process_group(backend, rank=world.rank, world_size=world.size,
                                timeout=timedelta(seconds=seconds), device_id=device if cuda else None)
        dist.barrier()
    except Exception as e:  # the store's and backends' own errors: refused, unresolvable, timed out
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise DanluError(f"rank {world.rank} of {world.size} could not join the rendezvous at {addr} within "
                         f"{seconds:g} s ({first})",
                         hint="check MASTER_ADDR/MASTER_PORT (torchrun: --rdzv-endpoint) names the first "
                              "process's machine and that all processes were started; "
                              f"{TIMEOUT_ENV} sets the wait") from None
    return Group(world, device, seconds)
