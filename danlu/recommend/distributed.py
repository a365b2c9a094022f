"""``danlu train movielens-bpr --nproc N``: MF and the two-tower model trained data-parallel on torch.distributed.

The processes are the ones danlu/training/launch.py starts for every task (torchrun's launcher, gloo on CPU,
NCCL per GPU), joined by danlu/training/distributed.py's ``start``. What differs here is the step:

- ``train.batch_size`` is the GLOBAL batch of positive (user, item) pairs. Every process draws the same epoch
  order and the same sampled negatives (same seed, same generator), and trains on its contiguous share of each
  batch: an epoch covers the positives once, split across the processes.
- Before each optimizer step the gradients are weighted by each share's size and summed over the processes
  (one all-reduce of all of them), so the step is the one-process step on the whole batch: weights stay the
  same in every process, and the run matches a one-process run up to floating-point summation order.
- Validation is scored by every process on the whole validation part (identical weights give identical scores,
  so every process picks the same epoch and stops together); process 0 alone writes the run folder,
  checkpoints and the report. ``--resume`` works as for one process: every process reads process 0's checkpoint.

Closed-form models (popularity, item-kNN, EASE) and the rating task are refused: nothing there to split.
"""

from __future__ import annotations

import os
from typing import Any

from danlu.errors import DanluError

DATA_PARALLEL = ("mf", "two_tower", "lightgcn")  # the gradient-trained ranking models


def check(recipe: Any) -> None:
    """Refuse what --nproc cannot split, with the reason."""
    from danlu.recommend.data import config_of

    name = recipe.model.name
    if config_of(recipe).task == "rating":
        raise DanluError("--nproc trains ranking models; recommend.task=rating fits its cross-validation folds in "
                         "one process", hint="train it without --nproc")
    if name not in DATA_PARALLEL:
        raise DanluError(f"--nproc splits gradient training; model '{name}' fits in closed form in one process",
                         hint=f"train it without --nproc; data-parallel models: {', '.join(DATA_PARALLEL)}")


def check_launch(recipe: Any, overrides: list[str], resume: Any, runs_dir: Any) -> None:
    """Before ``--nproc`` starts any process: a recommendation recipe it cannot split is refused once, here
    (every worker would refuse it too). Other recipes pass untouched."""
    from danlu.recipe import load_recipe
    from danlu.recommend import is_recommendation

    if resume is not None:
        from danlu.runs.store import read_run_recipe, resolve_run

        path = resolve_run(resume, runs_dir)
        loaded = load_recipe(base=read_run_recipe(path))
        from danlu.recommend import is_recommendation_run
        from danlu.runs.folder import RunFolder

        state = RunFolder(path).status().get("status")
        if is_recommendation_run(path) and state in ("done", "pruned"):  # else process 0 alone would say so
            raise DanluError(f"{path} is {state}: there is nothing to resume",
                             hint=f"train it again as a new run: danlu train {path / 'recipe.yaml'}")
    else:
        loaded = load_recipe(str(recipe or "digits-mlp"), [o for o in overrides if "=" in o])
    if is_recommendation(loaded):
        check(loaded)


def join(recipe: Any) -> Any:
    """The process group when launched as one of several processes, else None (torch.distributed unloaded)."""
    if not ({"WORLD_SIZE", "SLURM_PROCID"} & set(os.environ)):
        return None
    from danlu.training.distributed import start

    group = start(recipe)
    if group is not None:
        check(recipe)
    return group


class Shard:
    """This process's share of each global batch, and the gradient sum that makes the step the whole batch's.

    ``fit_bpr(shard=...)`` calls ``take`` once a batch (after the batch's negatives are drawn), ``reduce``
    between ``backward`` and the optimizer step, and ``total`` on the epoch's summed loss."""

    def __init__(self, rank: int, size: int):
        self.rank, self.size = rank, size
        self.weight = 1.0
        self.pairs = 0  # positives this process trained on (all epochs, selection and refit)

    @property
    def writer(self) -> bool:
        return self.rank == 0

    def take(self, idx: Any, u: Any, i: Any, j: Any) -> tuple[Any, Any, Any, Any]:
        """This share of the batch: rows ``idx`` of the positives; ``u``, ``i``, ``j`` hold them once per
        negative (``repeat``), so the same rows of every repeat are kept."""
        import torch

        n = len(idx)
        lo, hi = n * self.rank // self.size, n * (self.rank + 1) // self.size
        repeats = len(u) // max(n, 1)
        sel = torch.cat([torch.arange(lo, hi) + r * n for r in range(repeats)]) if repeats else torch.arange(0)
        self.weight = (hi - lo) / max(n, 1)
        self.pairs += hi - lo
        return idx[lo:hi], u[sel], i[sel], j[sel]

    def reduce(self, model: Any) -> None:
        """grad = Σ over processes of (share / batch) · (this share's mean-loss gradient): the batch's gradient.
        A parameter with no gradient anywhere keeps none (as in one process); where only some share touched it,
        the others add zeros."""
        import torch
        import torch.distributed as dist

        params = [p for p in model.parameters() if p.requires_grad]
        has = torch.tensor([p.grad is not None for p in params], dtype=torch.uint8)
        dist.all_reduce(has, op=dist.ReduceOp.MAX)
        used = [p for p, h in zip(params, has.tolist(), strict=True) if h]
        if not used:
            return
        for p in used:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.reshape(-1) for p in used]) * self.weight
        dist.all_reduce(flat)
        at = 0
        for p in used:
            p.grad.copy_(flat[at:at + p.numel()].view_as(p.grad))
            at += p.numel()

    def total(self, value: float) -> float:
        """The epoch's summed loss over all processes (each summed its share's)."""
        import torch
        import torch.distributed as dist

        t = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t)

    def describe(self, group: Any) -> dict[str, Any]:
        """What the report keeps: the processes, the backend, and the positives each trained on."""
        import torch
        import torch.distributed as dist

        pairs = torch.zeros(self.size, dtype=torch.int64)
        pairs[self.rank] = self.pairs
        dist.all_reduce(pairs)
        return {**group.describe(), "pairs_per_process": pairs.tolist(),
                "batch": "train.batch_size is the global batch, split across the processes"}
