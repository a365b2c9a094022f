"""The founding articles' hand calculations, redone step by step with danlu.scratch and checked.

Article 1 walks a 3-2-1 sigmoid network (inputs 1, 2, 3; every weight 0.01; every bias 0.1; target 1;
learning rate 0.001) through one forward pass, backpropagation and one gradient step. The loss here is
L = ½(y − ŷ)² (``MSE(half=True)``), whose derivative is ŷ − y. Names: neurons 1 and 2 are hidden, neuron 3
is the output; z_j1 and a_j1 are neuron j's input sum and activation, θ_ji its weight on input i (θ31 and
θ32 are the output's weights on a11 and a21), b_j its bias. Every gradient is derived by the chain rule
in scalars, then checked against the engine's backward and central finite differences.

The article's own numbers are shown only where they are on record (issue 15): σ(0.4) = 0.6321, and the
rule it uses to update θ31. Elsewhere the article column stays empty rather than guessed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from danlu.scratch.gradcheck import numerical_grad
from danlu.scratch.layers import Dense, Sequential, Sigmoid, sigmoid
from danlu.scratch.losses import MSE, BinaryCrossEntropy
from danlu.scratch.optim import SGD

X, WEIGHT, BIAS, TARGET, LR = np.array([1.0, 2.0, 3.0]), 0.01, 0.1, 1.0, 0.001
TOLERANCE = 0.5e-4  # the article prints 4 decimals: a difference beyond rounding is a mistake


@dataclass
class Step:
    name: str
    formula: str
    value: float
    article: float | None = None  # the article's number, where on record
    article_rule: float | None = None  # what the article's (wrong) rule gives, applied to the correct inputs
    article_says: str = ""  # the article's claim in words
    check: float | None = None  # the same quantity computed another way (engine backward / finite differences)

    @property
    def differs(self) -> bool:
        return any(v is not None and abs(v - self.value) > TOLERANCE for v in (self.article, self.article_rule))


@dataclass
class Section:
    title: str
    text: str
    steps: list[Step] = field(default_factory=list)


def _network() -> tuple[Sequential, Dense, Dense]:
    hidden = Dense(3, 2, weight=WEIGHT, bias=BIAS)
    out = Dense(2, 1, weight=WEIGHT, bias=BIAS)
    return Sequential(hidden, Sigmoid(), out, Sigmoid()), hidden, out


def article1() -> Section:
    """Forward, backward and one update of the 3-2-1 network, in scalars."""
    s = Section("Article 1: the 3-2-1 sigmoid network, one step",
                "x = (1, 2, 3), every θ = 0.01, every b = 0.1, y = 1, lr = 0.001, L = ½(y − a31)²")
    add = s.steps.append
    z11 = WEIGHT * X.sum() + BIAS
    a11 = float(sigmoid(np.array(z11)))
    add(Step("z11 = z21", "θ11·1 + θ12·2 + θ13·3 + b1 = 0.01·6 + 0.1", z11))
    add(Step("a11 = a21", "σ(z11) = 1 / (1 + e^−z11)", a11))
    z31 = WEIGHT * 2 * a11 + BIAS
    a31 = float(sigmoid(np.array(z31)))
    loss = 0.5 * (TARGET - a31) ** 2
    add(Step("z31", "θ31·a11 + θ32·a21 + b3", z31))
    add(Step("a31 = ŷ", "σ(z31)", a31))
    add(Step("L", "½(y − a31)²", loss))

    model, hidden, out = _network()  # the same network in the engine: its backward and SGD check the scalars
    mse = MSE(half=True)
    xb, yb = X[None, :], np.array([[TARGET]])

    def f() -> float:
        return mse.forward(model.forward(xb), yb)

    f()
    model.backward(mse.backward())
    fd_out_w = numerical_grad(f, out.weight.value)
    fd_hid_w = numerical_grad(f, hidden.weight.value)
    SGD(model.parameters(), lr=LR).step()
    dl_da31 = a31 - TARGET
    dl_dz31 = dl_da31 * a31 * (1 - a31)
    add(Step("∂L/∂a31", "a31 − y", dl_da31))
    add(Step("∂L/∂z31", "∂L/∂a31 · a31(1 − a31)", dl_dz31, check=float(out.bias.grad[0])))
    dl_dt31 = dl_dz31 * a11
    add(Step("∂L/∂θ31 = ∂L/∂θ32", "∂L/∂z31 · a11", dl_dt31, check=float(fd_out_w[0, 0]), article_rule=dl_dz31,
             article_says="∂L/∂z31, without the factor a11"))
    dl_dz11 = dl_dz31 * WEIGHT * a11 * (1 - a11)
    add(Step("∂L/∂a11 = ∂L/∂a21", "∂L/∂z31 · θ31", dl_dz31 * WEIGHT))
    add(Step("∂L/∂z11 = ∂L/∂z21", "∂L/∂a11 · a11(1 − a11)", dl_dz11, check=float(hidden.bias.grad[0])))
    for i in range(3):
        add(Step(f"∂L/∂θ1{i + 1} = ∂L/∂θ2{i + 1}", f"∂L/∂z11 · x{i + 1}", dl_dz11 * X[i],
                 check=float(fd_hid_w[i, 0])))
    add(Step("θ31 new = θ32 new", "θ31 − lr · ∂L/∂z31 · a11", WEIGHT - LR * dl_dt31,
             check=float(out.weight.value[0, 0]), article_rule=WEIGHT - LR * dl_dz31,
             article_says="θ31 − lr · ∂L/∂z31"))
    add(Step("b3 new", "b3 − lr · ∂L/∂z31", BIAS - LR * dl_dz31, check=float(out.bias.value[0])))
    for i in range(3):
        add(Step(f"θ1{i + 1} new = θ2{i + 1} new", f"θ1{i + 1} − lr · ∂L/∂z11 · x{i + 1}",
                 WEIGHT - LR * dl_dz11 * X[i], check=float(hidden.weight.value[i, 0])))
    add(Step("b1 new = b2 new", "b1 − lr · ∂L/∂z11", BIAS - LR * dl_dz11, check=float(hidden.bias.value[0])))
    add(Step("L after the step", "½(y − a31)², new weights (engine)", f()))
    add(Step("σ(0.4)", "1 / (1 + e^−0.4)", float(sigmoid(np.array(0.4))), article=0.6321,
             article_says="1 − e^−1 = 0.6321, not a sigmoid value"))
    return s


def article2() -> Section:
    """δ at a sigmoid output trained with cross-entropy: ŷ − y, not (ŷ − y)·σ'(z)."""
    s = Section("Article 2: the output error δ = ∂L/∂z for sigmoid + binary cross-entropy",
                "The article claims δ = (ŷ − y) ⊙ σ'(z). With L = −[y log ŷ + (1 − y) log(1 − ŷ)], ŷ = σ(z):\n"
                "∂L/∂ŷ = (ŷ − y) / (ŷ(1 − ŷ)) and σ'(z) = ŷ(1 − ŷ), so δ = ŷ − y: the σ' factor cancels.")
    bce = BinaryCrossEntropy()
    for z, y in ((-2.0, 1.0), (0.5, 0.0), (3.0, 1.0)):
        zs = np.array([z])
        bce.forward(zs, np.array([y]))
        y_hat = float(sigmoid(zs)[0])
        fd = numerical_grad(lambda zs=zs, y=y: bce.forward(zs, np.array([y])), zs)[0]
        s.steps.append(Step(f"δ at z = {z:g}, y = {y:g}", "ŷ − y", y_hat - y, check=fd,
                            article_rule=(y_hat - y) * y_hat * (1 - y_hat), article_says="δ = (ŷ − y) times σ'(z)"))
    return s


def article4(steps: int = 1000) -> Section:
    """y = 2x by hand: one weight and one bias, MSE, plain gradient descent on the whole table."""
    x = np.array([1.0, 2.0, 3.0, 4.0])
    y = 2 * x
    w, b, lr = 0.0, 0.0, 0.05
    s = Section("Article 4: fitting y = 2x by gradient descent, by hand",
                f"Data x = {x.tolist()}, y = 2x (chosen here); ŷ = w·x + b from w = b = 0; L = mean((ŷ − y)²);\n"
                f"∂L/∂w = mean(2(ŷ − y)·x), ∂L/∂b = mean(2(ŷ − y)); lr = {lr}, {steps} full-batch steps. "
                "check: the engine's Dense(1, 1) + MSE + SGD, same steps.")
    layer, mse = Dense(1, 1, weight=0.0, bias=0.0), MSE()
    sgd = SGD(layer.parameters(), lr=lr)
    for step in range(1, steps + 1):
        err = w * x + b - y
        gw, gb = float(np.mean(2 * err * x)), float(np.mean(2 * err))
        sgd.zero_grad()
        engine_loss = mse.forward(layer.forward(x[:, None]), y[:, None])
        layer.backward(mse.backward())
        if step <= 2:
            s.steps.append(Step(f"step {step}: L", "mean((w·x + b − y)²)", float(np.mean(err**2)), check=engine_loss))
            s.steps.append(Step(f"step {step}: ∂L/∂w", "mean(2(ŷ − y)·x)", gw, check=float(layer.weight.grad[0, 0])))
            s.steps.append(Step(f"step {step}: ∂L/∂b", "mean(2(ŷ − y))", gb, check=float(layer.bias.grad[0])))
        w, b = w - lr * gw, b - lr * gb
        sgd.step()
        if step <= 2:
            s.steps.append(Step(f"step {step}: w", "w − lr·∂L/∂w", w, check=float(layer.weight.value[0, 0])))
            s.steps.append(Step(f"step {step}: b", "b − lr·∂L/∂b", b, check=float(layer.bias.value[0])))
    s.steps.append(Step(f"after {steps} steps: w", "→ 2", w, check=float(layer.weight.value[0, 0])))
    s.steps.append(Step(f"after {steps} steps: b", "→ 0", b, check=float(layer.bias.value[0])))
    s.steps.append(Step("prediction at x = 10", "w·10 + b → 20", w * 10 + b,
                        check=float(layer.forward(np.array([[10.0]]))[0, 0])))
    return s


def worked_example() -> list[Section]:
    return [article1(), article2(), article4()]


def as_json(sections: list[Section]) -> dict:
    return {"sections": [{"title": sec.title, "text": sec.text,
                          "steps": [asdict(st) | {"differs": st.differs} for st in sec.steps]} for sec in sections],
            "mistakes": sum(st.differs for sec in sections for st in sec.steps)}


def _num(v: float | None) -> str:
    return "" if v is None else f"{v:.7g}"


def render(sections: list[Section]) -> str:
    """Plain-text tables: value, the article's number (✗ where it differs), a check computed another way."""
    lines = []
    for sec in sections:
        lines += [f"## {sec.title}", *sec.text.splitlines(), ""]
        w0 = max(len(st.name) for st in sec.steps)
        w1 = max(len(st.formula) for st in sec.steps)
        lines.append(f"{'':2}{'quantity':<{w0}}  {'formula':<{w1}}  {'value':>13}  {'check':>13}  article")
        for st in sec.steps:
            mark = "✗" if st.differs else " "
            said = [_num(st.article)] if st.article is not None else []
            if st.article_rule is not None:
                said.append(f"rule gives {_num(st.article_rule)}")
            if st.article_says:
                said.append(f"({st.article_says})")
            lines.append(f"{mark} {st.name:<{w0}}  {st.formula:<{w1}}  {_num(st.value):>13}  {_num(st.check):>13}  "
                         f"{' '.join(said)}")
        lines.append("")
    n = sum(st.differs for sec in sections for st in sec.steps)
    lines += [f"✗ marks {n} place(s) where the article's number or rule differs from the computation.",
              "check: the same quantity from the engine (backward, SGD) or from central finite differences.",
              "rule gives: the article's formula applied to the correct inputs (its own number is not on record)."]
    return "\n".join(lines)
