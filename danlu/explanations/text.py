"""Token attributions: integrated gradients on the embedding layer's output (ids are not differentiable).

The model runs on the real ids while a forward hook swaps its embedding output for the interpolated
vectors, so masks, lengths and (for transformers) position embeddings all come from the real text.
"""

from __future__ import annotations

import torch
from torch import nn

TEXT_STEPS = 32


def embedding_layer(model: nn.Module) -> nn.Embedding:
    """The token embedding: ``embed`` for danlu's RNNs and TextCNN, the encoder's word embeddings for a
    transformer (so only the tokens are attributed, not their positions)."""
    encoder = getattr(model, "encoder", None)
    if encoder is not None and hasattr(encoder, "get_input_embeddings"):
        return encoder.get_input_embeddings()
    layer = getattr(model, "embed", None)
    if isinstance(layer, nn.Embedding):
        return layer
    raise TypeError(f"{type(model).__name__} has no token embedding to attribute to")


def min_width(model: nn.Module) -> int:
    """TextCNN pads texts shorter than its widest kernel; give it that width up front so the embedding
    output the hook replaces has the shape the model will compute."""
    return max(getattr(model, "kernel_sizes", (1,)))


def attribute_tokens(model: nn.Module, ids: torch.Tensor, targets: torch.Tensor, *, pad_id: int,
                     special_ids: set[int] = frozenset(), steps: int = TEXT_STEPS
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores [N, L], convergence deltas [N]) for right-padded ids [N, L]; padding scores 0.

    The baseline puts the pad token's embedding at every real position (zeros for danlu's own models,
    whose pad row is zero); special tokens ([CLS], [SEP]) keep their own, as they are no evidence."""
    from captum.attr import IntegratedGradients

    from danlu.explanations.inplace import no_inplace

    model.eval()
    layer = embedding_layer(model)
    with torch.no_grad():
        emb = layer(ids)
        keep = (ids == pad_id) | torch.isin(ids, torch.tensor(sorted(special_ids), dtype=ids.dtype))
        base = torch.where(keep[..., None], emb, layer(torch.full_like(ids, pad_id)))
    swap: dict[str, torch.Tensor] = {}

    def replace(_module, _args, output):
        given = swap.get("emb")
        return output if given is None or given.shape != output.shape else given

    def forward(e: torch.Tensor, real_ids: torch.Tensor) -> torch.Tensor:
        swap["emb"] = e
        try:
            return model(real_ids)
        finally:
            swap.pop("emb", None)

    handle = layer.register_forward_hook(replace)
    try:
        with no_inplace(model), torch.backends.cudnn.flags(enabled=False):  # cuDNN RNNs backward only in train
            attr, delta = IntegratedGradients(forward).attribute(
                emb, baselines=base, target=targets, additional_forward_args=(ids,), n_steps=steps,
                internal_batch_size=max(steps, 64), return_convergence_delta=True)
    finally:
        handle.remove()
    scores = attr.sum(-1).masked_fill(ids == pad_id, 0.0)
    return scores.detach(), delta.detach()


def trim(ids: torch.Tensor, pad_id: int, width: int = 1) -> torch.Tensor:
    """Cut trailing all-padding columns (the model does the same; the hook needs the shapes to agree)."""
    used = (ids != pad_id).any(0).nonzero()
    length = max(int(used[-1]) + 1 if used.numel() else 1, width)
    if length > ids.size(1):
        return torch.nn.functional.pad(ids, (0, length - ids.size(1)), value=pad_id)
    return ids[:, :length]


# ---------------------------------------------------------------------------------------------- showing


def _shade(score: float, scale: float) -> tuple[int, int, int]:
    """Green for evidence for the target, red against, paler when weaker."""
    s = max(-1.0, min(1.0, score / scale)) if scale > 0 else 0.0
    fade = int(255 * (1 - abs(s) * 0.75))
    return (fade, 255, fade) if s >= 0 else (255, fade, fade)


def scale_of(scores: list[float]) -> float:
    return max((abs(s) for s in scores), default=0.0)


def terminal_line(pairs: list[tuple[str, float]]) -> str:
    """The text with each token's background coloured by its score (24-bit ANSI colours)."""
    from danlu.printable import terminal_safe

    scale = scale_of([s for _, s in pairs])
    out = []
    for token, score in pairs:
        r, g, b = _shade(score, scale)
        out.append(f"\x1b[48;2;{r};{g};{b}m\x1b[30m{terminal_safe(token)}\x1b[0m")
    return " ".join(out) if any(len(t) > 1 and t.isascii() for t, _ in pairs) else "".join(out)


def html_spans(pairs: list[tuple[str, float]]) -> str:
    """The same colouring as HTML spans, each token's score in its tooltip."""
    from html import escape

    scale = scale_of([s for _, s in pairs])
    spans = []
    for token, score in pairs:
        r, g, b = _shade(score, scale)
        spans.append(f'<span style="background:rgb({r},{g},{b})" title="{score:+.4f}">{escape(token)}</span>')
    joiner = " " if any(len(t) > 1 and t.isascii() for t, _ in pairs) else ""
    return joiner.join(spans)
