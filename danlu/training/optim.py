"""Optimizers (SGD, Adam, AdamW, RMSprop) and learning-rate schedules, written on torch's foreach ops.

Why not torch.optim: every torch.optim.Optimizer method is wrapped in a lazy ``torch._dynamo`` import,
which costs 1.5–3.3 s of start-up here (``python -c "import torch._dynamo"`` after torch), more than a
whole mnist-mlp epoch. These follow torch.optim's update rules exactly; tests/test_optim.py checks the
parameters against torch.optim step by step. State is plain tensors + JSON, so checkpoints need no pickle.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from danlu.errors import unknown_name
from danlu.recipe import OPTIMIZERS, SCHEDULES, TrainConfig


class Optimizer:
    """Param groups with their own lr and weight decay; per-parameter state tensors by name."""

    def __init__(self, groups: list[dict[str, Any]], **defaults: Any):
        self.defaults = defaults
        self.param_groups = [{**defaults, **g, "params": list(g["params"])} for g in groups]
        for g in self.param_groups:
            g.setdefault("initial_lr", g["lr"])
        self.state: dict[int, dict[str, torch.Tensor]] = {}  # index of the param over all groups → state
        self.counts: dict[int, int] = {}  # per-param step counts, mirrored from state "step" without a sync
        self.steps = 0

    def params(self) -> list[tuple[int, dict[str, Any], torch.Tensor]]:
        out, k = [], 0
        for g in self.param_groups:
            for p in g["params"]:
                out.append((k, g, p))
                k += 1
        return out

    def zero_grad(self, set_to_none: bool = True) -> None:
        """As torch.optim: drop the gradients, or zero them in place (libraries such as Opacus ask for either)."""
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    if p.grad.grad_fn is not None:
                        p.grad.detach_()
                    else:
                        p.grad.requires_grad_(False)
                    p.grad.zero_()

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.steps += 1
        k = 0
        for g in self.param_groups:
            params, grads, keys = [], [], []
            for p in g["params"]:
                if p.grad is not None:
                    params.append(p)
                    grads.append(p.grad)
                    keys.append(k)
                k += 1
            if params:
                self._update(g, params, grads, keys)
        return loss

    def add_param_group(self, group: dict[str, Any]) -> None:
        group = {**self.defaults, **group, "params": list(group["params"])}
        group.setdefault("initial_lr", group["lr"])
        self.param_groups.append(group)

    def _state(self, k: int, name: str, like: torch.Tensor | None = None) -> torch.Tensor:
        """State tensor ``name`` of param ``k``, zeros shaped like ``like`` (a scalar when None) at first."""
        st = self.state.setdefault(k, {})
        if name not in st:
            st[name] = torch.zeros(()) if like is None else torch.zeros_like(like, memory_format=torch.preserve_format)
        return st[name]

    def _update(self, g: dict, params: list, grads: list, keys: list[int]) -> None:
        raise NotImplementedError

    # torch.optim's layout: {"state": {param index: {name: tensor}}, "param_groups": [{..., "params": [indices]}]}
    def state_dict(self) -> dict[str, Any]:
        groups, k = [], 0
        for g in self.param_groups:
            n = len(g["params"])
            groups.append({**{key: v for key, v in g.items() if key != "params"}, "params": list(range(k, k + n))})
            k += n
        return {"state": {k: dict(st) for k, st in self.state.items()}, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        groups = state_dict["param_groups"]
        if state_dict.get("lenient"):  # an older checkpoint: the groups' lrs only
            groups = [{**g, "params": own["params"]} for g, own in zip(groups, self.param_groups, strict=True)]
        if len(groups) != len(self.param_groups) or any(
                len(a["params"]) != len(b["params"]) for a, b in zip(groups, self.param_groups, strict=True)):
            raise ValueError("the saved optimizer state has other parameter groups than this optimizer")
        for g, saved in zip(self.param_groups, groups, strict=True):
            g.update({key: v for key, v in saved.items() if key != "params"})
        by_key = {k: p for k, _, p in self.params()}
        self.state = {int(k): {name: t.to(by_key[int(k)].device, copy=True) for name, t in st.items()}
                      for k, st in state_dict["state"].items()}
        self.counts = {k: int(st["step"]) for k, st in self.state.items() if "step" in st}
        self.steps = max(self.counts.values(), default=self.steps)


class SGD(Optimizer):
    def _update(self, g, params, grads, keys):
        if g["weight_decay"]:
            grads = torch._foreach_add(grads, params, alpha=g["weight_decay"])
        mom = g["momentum"]
        if mom:
            fresh = [k not in self.state for k in keys]
            bufs = [self._state(k, "momentum_buffer", p) for k, p in zip(keys, params, strict=True)]
            for b, grad, new in zip(bufs, grads, fresh, strict=True):
                if new:
                    b.copy_(grad)  # torch starts the buffer at the first gradient
                else:
                    b.mul_(mom).add_(grad)
            grads = torch._foreach_add(grads, bufs, alpha=mom) if g["nesterov"] else bufs
        torch._foreach_add_(params, grads, alpha=-g["lr"])


class Adam(Optimizer):
    decoupled = False

    def _update(self, g, params, grads, keys):
        b1, b2, eps, lr, wd = g["beta1"], g["beta2"], g["eps"], g["lr"], g["weight_decay"]
        if wd and self.decoupled:
            torch._foreach_mul_(params, 1 - lr * wd)
        elif wd:
            grads = torch._foreach_add(grads, params, alpha=wd)
        m = [self._state(k, "exp_avg", p) for k, p in zip(keys, params, strict=True)]
        v = [self._state(k, "exp_avg_sq", p) for k, p in zip(keys, params, strict=True)]
        steps = [self._state(k, "step") for k in keys]
        torch._foreach_add_(steps, 1.0)
        torch._foreach_lerp_(m, grads, 1 - b1)
        torch._foreach_mul_(v, b2)
        torch._foreach_addcmul_(v, grads, grads, 1 - b2)
        by_step: dict[int, list[int]] = {}  # bias correction depends on each param's own step count
        for i, k in enumerate(keys):
            self.counts[k] = self.counts.get(k, 0) + 1
            by_step.setdefault(self.counts[k], []).append(i)
        for t, idx in by_step.items():
            bc1, bc2 = 1 - b1**t, 1 - b2**t
            denom = torch._foreach_sqrt([v[i] for i in idx])
            torch._foreach_div_(denom, math.sqrt(bc2))
            torch._foreach_add_(denom, eps)
            torch._foreach_addcdiv_([params[i] for i in idx], [m[i] for i in idx], denom, -lr / bc1)


class AdamW(Adam):
    decoupled = True


class RMSprop(Optimizer):
    def _update(self, g, params, grads, keys):
        if g["weight_decay"]:
            grads = torch._foreach_add(grads, params, alpha=g["weight_decay"])
        sq = [self._state(k, "square_avg", p) for k, p in zip(keys, params, strict=True)]
        torch._foreach_add_([self._state(k, "step") for k in keys], 1.0)  # kept as torch.optim keeps it
        torch._foreach_mul_(sq, g["alpha"])
        torch._foreach_addcmul_(sq, grads, grads, 1 - g["alpha"])
        avg = torch._foreach_add(torch._foreach_sqrt(sq), g["eps"])
        if g["momentum"] > 0:
            bufs = [self._state(k, "momentum_buffer", p) for k, p in zip(keys, params, strict=True)]
            torch._foreach_mul_(bufs, g["momentum"])
            torch._foreach_addcdiv_(bufs, grads, avg)
            torch._foreach_add_(params, bufs, alpha=-g["lr"])
        else:
            torch._foreach_addcdiv_(params, grads, avg, value=-g["lr"])


NORM_LAYERS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> Optimizer:
    """No weight decay on biases and norm layers (1-D params): decaying them only hurts."""
    scaled = {id(m.bias) for m in model.modules() if isinstance(m, NORM_LAYERS) and m.bias is not None
              } if cfg.norm_bias_lr_scale != 1.0 else set()
    decay, no_decay, norm_bias = [], [], []
    for p in model.parameters():
        if p.requires_grad:
            (norm_bias if id(p) in scaled else no_decay if p.ndim <= 1 else decay).append(p)
    if cfg.weight_decay:
        groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    else:  # one group: every update op then runs once over all params
        groups = [{"params": decay + no_decay, "weight_decay": 0.0}]
    groups.append({"params": norm_bias, "weight_decay": 0.0, "lr": cfg.lr * cfg.norm_bias_lr_scale})
    groups = [g for g in groups if g["params"]]
    name = cfg.optimizer
    if name == "sgd":
        return SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0)
    if name in ("adam", "adamw"):
        cls = Adam if name == "adam" else AdamW
        return cls(groups, lr=cfg.lr, beta1=0.9, beta2=0.999, eps=1e-8)
    if name == "rmsprop":
        return RMSprop(groups, lr=cfg.lr, momentum=cfg.momentum, alpha=0.99, eps=1e-8)
    raise unknown_name("optimizer", name, OPTIMIZERS)


def lr_factor(cfg: TrainConfig, steps_per_epoch: int):
    """step → multiplier of the base lr. Warmup is linear; onecycle warms up over 25 % by default."""
    total = cfg.total_steps(steps_per_epoch)
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    name = cfg.schedule
    if name not in SCHEDULES:
        raise unknown_name("schedule", name, SCHEDULES)
    if name == "onecycle" and warmup == 0:
        warmup = int(0.25 * total)
    floor = max(cfg.min_lr_ratio, 1e-3) if name == "onecycle" else cfg.min_lr_ratio

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if name == "none":
            return 1.0
        if name == "step":
            return cfg.gamma ** ((step // steps_per_epoch) // cfg.step_epochs)
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if name == "linear":
            return floor + (1 - floor) * (1 - progress)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))  # cosine and onecycle's tail

    return factor


class Schedule:
    """Sets each group's lr to initial_lr × factor(step), once per optimizer step."""

    def __init__(self, optimizer: Optimizer, factor):
        self.optimizer, self.factor, self.step_count = optimizer, factor, 0
        self._apply()

    def _apply(self) -> None:
        f = self.factor(self.step_count)
        for g in self.optimizer.param_groups:
            g["lr"] = g["initial_lr"] * f

    def step(self) -> None:
        self.step_count += 1
        self._apply()

    def state_dict(self) -> dict[str, int]:
        return {"step_count": self.step_count}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.step_count = state["step_count"]
        self._apply()


def build_schedule(optimizer: Optimizer, cfg: TrainConfig, steps_per_epoch: int) -> Schedule:
    return Schedule(optimizer, lr_factor(cfg, steps_per_epoch))
