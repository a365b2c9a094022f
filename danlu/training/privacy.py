"""Differentially private training (DP-SGD) on Opacus: Poisson batches, per-sample clipping, Gaussian noise.

Opacus does the mathematics (per-sample gradients, clipping and noise in ``DPOptimizer``, the accountants);
this module is what danlu adds around it: the recipe's privacy block turned into a plan (δ, σ, q, steps)
with every refusal before a file is written, the model made trainable privately (LSTM/GRU → Opacus' DP
versions with the same state_dict names; BatchNorm refused with the fix model.norm=group, the pretrained
transformer refused with its reason),
the loop's model/optimizer/step wrapped, and ε after every epoch from the accountant. ``make_private`` is
the engine without danlu's loop, for other training drivers (the federated clients).

Opacus is imported only here, and only when a recipe asks for privacy.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from danlu.errors import DanluError, RecipeError
from danlu.recipe import PrivacyConfig, Recipe
from danlu.training.hooks import Callback

# What the (ε, δ) guarantee is about, and what it leaves out; written into every private run's report.
GUARANTEE = ("(ε, δ)-differential privacy of the trained weights with respect to adding or removing one "
             "example of the training split (Poisson sampling, per-sample clipping, Gaussian noise)")
NOT_COVERED = [
    "hyperparameter search and repeated runs: every trained run spends its own ε (danlu tune is not accounted)",
    "the validation split: choosing the best epoch or stopping early on it uses those examples without noise "
    "(it protects the training examples, not the validation ones)",
    "the test split and the data statistics computed before training (image normalization, vocabulary, "
    "target scaling, class names) come from the data without noise",
    "the model's initialization or pretrained weights, and anything outside the training examples",
]
REFUSED_MODELS = {
    "transformer": (
        "the pretrained transformer is refused with privacy: DP-SGD needs per-sample gradients of all "
        "~22 M parameters (hooks keep one gradient copy per example), and this model already trains at "
        "~3 samples/s on 2 CPU cores without privacy",
        "train a private lstm (model.name=lstm; its LSTM layers become Opacus' DP LSTM), or use the transformer "
        "without train.privacy"),
}


@dataclass
class PrivacyPlan:
    """Everything the accountant needs, fixed before training: ε after ``steps`` steps follows from these."""

    noise_multiplier: float  # σ: noise std over the clipping norm
    sample_rate: float  # q: each example's probability to be in a step's batch
    steps: int  # planned optimizer steps (epochs × steps per epoch)
    delta: float
    max_grad_norm: float  # C
    accountant: str
    expected_batch_size: int
    n_train: int
    target_epsilon: float | None = None
    notes: list[str] = field(default_factory=list)


def opacus_version() -> str:
    import opacus

    return opacus.__version__


def resolve_delta(cfg: PrivacyConfig, n: int) -> float:
    """``auto`` = 1/(10·N); an explicit δ must stay below 1/N (at 1/N, leaking one whole example is "private")."""
    if cfg.delta == "auto":
        return 1.0 / (10 * n)
    if cfg.delta >= 1.0 / n:
        raise RecipeError(f"train.privacy.delta={cfg.delta:g} is not below 1/N = {1.0 / n:.3g} for the {n} "
                          "training samples: a mechanism that publishes one random example whole meets that δ",
                          hint=f"use delta: auto (1/(10·N) = {1.0 / (10 * n):.3g}) or a δ well below {1.0 / n:.3g}")
    return float(cfg.delta)


def epsilon_of(noise_multiplier: float, sample_rate: float, steps: int, delta: float, accountant: str) -> float:
    """ε of ``steps`` Poisson-subsampled Gaussian steps, from Opacus' accountant (the printed and reported ε)."""
    from opacus.accountants import create_accountant

    if steps <= 0:
        return 0.0
    if noise_multiplier == 0:
        return float("inf")
    acc = create_accountant(mechanism=accountant)
    acc.history = [(noise_multiplier, sample_rate, steps)]
    with warnings.catch_warnings():  # "optimal order is the largest alpha": the ε is still a valid upper bound
        warnings.simplefilter("ignore", UserWarning)
        return float(acc.get_epsilon(delta=delta))


def recorded_epsilon(epsilon: float) -> float | None:
    """ε as run folders store it: without noise (σ = 0) it is infinite, which JSON cannot hold, so None."""
    return epsilon if math.isfinite(epsilon) else None


def calibrate(epsilon: float, delta: float, sample_rate: float, steps: int, accountant: str) -> float:
    """σ that reaches ``epsilon`` after ``steps`` steps; an unreachable ε is a RecipeError with the fix."""
    from opacus.accountants.utils import get_noise_multiplier

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # as in epsilon_of
            return float(get_noise_multiplier(target_epsilon=epsilon, target_delta=delta, sample_rate=sample_rate,
                                              steps=steps, accountant=accountant))
    except ValueError as e:  # Opacus: "The privacy budget is too low." (σ would exceed its 1e6 bound)
        raise RecipeError(f"train.privacy.epsilon={epsilon:g} cannot be reached with {steps} steps at sampling "
                          f"rate {sample_rate:.3g} (δ={delta:.3g}): Opacus says '{e}'",
                          hint="raise train.privacy.epsilon, train fewer epochs, lower train.batch_size, or give "
                               "train.privacy.noise_multiplier instead and read the ε it reaches") from None


def check_model(model: nn.Module, model_name: str) -> list[str]:
    """Make ``model`` trainable with per-sample gradients, in place; returns notes. Refuses what cannot be.

    BatchNorm is refused with the fix ``model.norm=group``, not swapped silently: the run's model is rebuilt from
    its recipe for predict, export and serve, so the GroupNorm must be in the recipe, not only in the trained loop.
    LSTM/GRU layers become Opacus' DPLSTM/DPGRU, whose state_dict has the same names and shapes, so the
    saved weights load into the plain layers at inference and give the same outputs.
    """
    from opacus.grad_sample import GradSampleModule
    from opacus.validators import ModuleValidator

    if model_name in REFUSED_MODELS:
        why, hint = REFUSED_MODELS[model_name]
        raise RecipeError(why, hint=hint)
    from danlu.models.norm import batchnorm_layers, groupnorm_hint

    bn = batchnorm_layers(model)
    if bn:
        raise RecipeError(
            f"model {model_name} has BatchNorm layers (at {', '.join(bn[:3])}{' …' if len(bn) > 3 else ''}): batch "
            "statistics mix the examples of a batch, so no per-sample gradient exists to clip",
            hint=groupnorm_hint(model_name) + "; danlu refuses BatchNorm rather than swapping it for GroupNorm "
                 "behind the recipe's back")
    notes = []
    swapped = _swap_rnns(model)
    if swapped:
        notes.append(f"privacy: {swapped} LSTM/GRU layer(s) train as Opacus' DP LSTM/GRU (same weights layout; "
                     "predict, export and serve use the plain layers)")
    problems = [str(e) for e in ModuleValidator.validate(model, strict=False)]
    problems += [str(e) for e in GradSampleModule.validate(model, strict=False)]
    if problems:
        raise RecipeError(f"model {model_name} cannot be trained privately: {problems[0]}",
                          hint="use a model made of Linear, Conv, Embedding, LayerNorm/GroupNorm and LSTM layers "
                               "(mlp, cnn, lstm)")
    return notes


def _swap_rnns(model: nn.Module) -> int:
    """nn.LSTM/nn.GRU → DPLSTM/DPGRU with the same weights; returns how many DP RNNs the model now has."""
    from opacus.layers import DPGRU, DPLSTM
    from opacus.layers.dp_rnn import DPRNNBase

    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) not in (nn.LSTM, nn.GRU):
                continue
            cls = DPLSTM if isinstance(child, nn.LSTM) else DPGRU
            dp = cls(child.input_size, child.hidden_size, num_layers=child.num_layers, bias=child.bias,
                     batch_first=child.batch_first, dropout=child.dropout, bidirectional=child.bidirectional)
            dp.load_state_dict(child.state_dict())
            dp.to(next(child.parameters()).device)
            dp._state_dict_hooks.clear()  # Opacus' root-only filter returns a copy, which hid ours' edits
            dp._register_state_dict_hook(_drop_cell_keys)
            dp._register_load_state_dict_pre_hook(_add_cell_keys, with_module=True)
            setattr(parent, name, dp)
    return sum(isinstance(m, DPRNNBase) for m in model.modules())


# Opacus' DP RNNs name their weights as nn.LSTM does (weight_ih_l0 …), but its hook that hides the cells' own
# names (l0.ih.weight …) only works when the RNN is the root module; inside a model both names were saved.
# These two keep a model's state_dict exactly the plain model's, in both directions, at any depth.
def _drop_cell_keys(module: nn.Module, state_dict: dict, prefix: str, local_metadata: Any) -> None:
    for old in module.old_to_new:
        state_dict.pop(prefix + old, None)


def _add_cell_keys(module: nn.Module, state_dict: dict, prefix: str, *args: Any) -> None:
    for old, new in module.old_to_new.items():
        if prefix + new in state_dict and prefix + old not in state_dict:
            state_dict[prefix + old] = state_dict[prefix + new]


def plan_privacy(recipe: Recipe, model: nn.Module, train_split: Any) -> PrivacyPlan:
    """The recipe's privacy block → a plan, and ``model`` made private-trainable; every refusal comes here,
    before the run folder exists (δ ≥ 1/N, an unreachable ε, layers Opacus cannot train, the streaming loader)."""
    from danlu.data.tensors import poisson_steps

    cfg, train = recipe.train.privacy, recipe.train
    if hasattr(train_split, "stream_loader"):
        raise RecipeError("train.privacy needs the in-memory loader (Poisson sampling draws from the whole split)",
                          hint="set data.loader=memory (raise data.max_memory_mb if the data is large)")
    n = len(train_split)
    if train.batch_size >= n:
        raise RecipeError(f"train.batch_size={train.batch_size} is not below the {n} training samples: with "
                          "sampling rate 1 DP-SGD has no subsampling to amplify privacy",
                          hint=f"lower train.batch_size (e.g. {max(1, n // 20)})")
    delta = resolve_delta(cfg, n)
    q = train.batch_size / n
    steps = train.total_steps(poisson_steps(n, train.batch_size))
    notes = check_model(model, recipe.model.name)
    if cfg.epsilon is not None:
        sigma = calibrate(cfg.epsilon, delta, q, steps, cfg.accountant)
    else:
        sigma = float(cfg.noise_multiplier)
        if sigma == 0:
            notes.append("privacy: noise_multiplier 0 clips per-sample gradients but adds no noise: ε is infinite")
    if train.early_stop is not None:
        notes.append("privacy: early stopping reads the validation split; the ε reported is for the steps "
                     "actually taken (at most the planned budget)")
    return PrivacyPlan(sigma, q, steps, delta, cfg.max_grad_norm, cfg.accountant, train.batch_size, n,
                       cfg.epsilon, notes)


class PrivateStep:
    """The supervised step through the per-sample-gradient wrapper, in full precision. An empty Poisson batch
    still takes a step (noise only, as the analysis assumes): its loss is a zero that keeps the graph."""

    def __init__(self, grad_module: nn.Module, criterion: Any):
        self.grad_module, self.criterion = grad_module, criterion

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.grad_module(x)
        if len(y) == 0:
            return out.sum() * 0.0, out
        return self.criterion(out, y), out


def make_private(model: nn.Module, optimizer: Any, plan: PrivacyPlan, generator: torch.Generator | None = None
                 ) -> tuple[nn.Module, Any]:
    """(per-sample-gradient module, DP optimizer) for ``model`` and any optimizer with torch.optim's
    interface (danlu's own included); batches must come Poisson-sampled with ``plan.sample_rate``
    (danlu.data.tensors.poisson_batches). The model's weights stay shared: save ``model``, not the wrapper."""
    from opacus.grad_sample import GradSampleModule
    from opacus.optimizers import DPOptimizer

    # the first layer's input needs no gradient, and torch says so on every backward through Opacus' hooks
    warnings.filterwarnings("ignore", message="Full backward hook is firing", category=UserWarning)
    _register_layout_safe_conv2d()
    grad_module = GradSampleModule(model, loss_reduction="mean")
    dp = DPOptimizer(optimizer, noise_multiplier=plan.noise_multiplier, max_grad_norm=plan.max_grad_norm,
                     expected_batch_size=plan.expected_batch_size, loss_reduction="mean", generator=generator)
    return grad_module, dp


def _register_layout_safe_conv2d() -> None:
    """Opacus' Conv2d per-sample gradients unfold the layer's input with ``as_strided`` and strides computed for
    NCHW (opacus.utils.tensor_utils.unfold2d, Opacus 1.6): a channels-last input is read scrambled, without an
    error (the second conv of mnist-cnn-dp got updates at cosine 0.05 to the true ones). Registered in its place,
    through Opacus' own extension point: the same computation on an NCHW copy of the input. Conv nets keep
    training channels-last, 1.4-1.7x faster per DP step than NCHW on mnist-cnn-dp's net (7,350-8,630 vs
    5,040-5,190 samples/s, batch 512, 2-core EPYC Zen 2)."""
    from opacus.grad_sample.conv import compute_conv_grad_sample
    from opacus.grad_sample.utils import register_grad_sampler

    @register_grad_sampler(nn.Conv2d)
    def conv2d_any_layout(layer: nn.Conv2d, activations: list[torch.Tensor], backprops: torch.Tensor) -> Any:
        return compute_conv_grad_sample(layer, [a.contiguous() for a in activations], backprops)


class PrivacyAccountant(Callback):
    """Counts the DP steps (resumed with the run) and adds the accountant's ε to every epoch's metrics."""

    def __init__(self, plan: PrivacyPlan):
        self.plan, self.steps = plan, 0

    def after_step(self, loop: Any, loss: float) -> None:
        self.steps += 1

    def epsilon(self) -> float:
        p = self.plan
        return epsilon_of(p.noise_multiplier, p.sample_rate, self.steps, p.delta, p.accountant)

    def on_epoch_end(self, loop: Any, metrics: dict[str, float]) -> None:
        if (eps := recorded_epsilon(self.epsilon())) is not None:
            metrics["epsilon"] = eps

    def state_dict(self) -> dict[str, Any]:
        return {"dp_steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = int(state.get("dp_steps", 0))

    def summary(self) -> dict[str, Any]:
        """The report's privacy block: what was spent, how it was computed, and what it does not cover."""
        p = self.plan
        return {"epsilon": recorded_epsilon(self.epsilon()), "delta": p.delta, "accountant": p.accountant,
                "opacus": opacus_version(), "noise_multiplier": p.noise_multiplier, "sample_rate": p.sample_rate,
                "steps": self.steps, "planned_steps": p.steps, "max_grad_norm": p.max_grad_norm,
                "expected_batch_size": p.expected_batch_size, "n_train": p.n_train,
                "target_epsilon": p.target_epsilon, "sampling": "poisson", "guarantee": GUARANTEE,
                "not_covered": list(NOT_COVERED), "notes": list(p.notes)}


def attach(loop: Any) -> PrivacyAccountant:
    """Make a built loop private: per-sample gradients, DP optimizer, full-precision step, the accountant first
    among the callbacks (so ε is in the epoch's row before the run recorder writes it)."""
    from danlu.tasks import loss_fn

    if not getattr(loop.train_loader, "poisson", False):
        raise DanluError("the private loop needs a Poisson-sampled training loader",
                         hint="build the loader with make_loader for a recipe whose train.privacy is set")
    plan = plan_privacy(loop.recipe, loop.model, loop.train_loader.split)
    grad_module, dp = make_private(loop.model, loop.optimizer, plan)
    loop.optimizer = dp  # its param_groups are the wrapped optimizer's: the schedule still steers the lr
    loop.amp = None  # per-sample gradients in full precision (no fp16 loss scaling under DP)
    loop.step = PrivateStep(grad_module, loss_fn(loop.schema, loop.recipe.train.label_smoothing))
    accountant = PrivacyAccountant(plan)
    loop.callbacks.insert(0, accountant)
    loop.privacy = accountant
    return accountant


def plan_dict(plan: PrivacyPlan) -> dict[str, Any]:
    return asdict(plan)
