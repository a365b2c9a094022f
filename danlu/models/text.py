"""Text classifiers that take one padded LongTensor of token ids [B, L] and return logits [B, K].

Every model derives its mask and lengths from ``ids != pad_id`` (ids are right-padded), so the rest
of the system passes a single tensor, and the amount of padding never changes a prediction.

Throughput, forward + backward + Adam step, this machine (2 CPU cores, torch 2.14.1 CPU), measured
while other jobs kept the load average at 4-6, so an idle machine should do better:
  RNNClassifier(vocab 5,000, embed 128, hidden 128, biLSTM, max pooling), batch 64, ChnSentiCorp train
  char tokens capped at 200 (mean 94 real tokens a text), real (non-pad) tokens per second:
    padded path (CPU default), 1 thread:   2,830 tok/s random batches, 6,370 tok/s length-bucketed
    padded path, 2 threads:                1,210 tok/s random,         2,530 tok/s bucketed
    packed path (GPU default), 1 thread:   1,120 tok/s random,         2,240 tok/s bucketed
  TransformerClassifier(MiniLM-L6, all layers trained), batch 32 x 64 tokens:
    3.3 samples/s with 2 threads, 6.8 samples/s with 1 thread (inference alone: 12-15 samples/s)
  Under contention one torch thread beat two (OpenMP threads spin while waiting for a core).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

RNN_CELLS = ("lstm", "gru")
RNN_POOLINGS = ("max", "last", "mean")


def trim_to_longest(ids: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Drop trailing columns that are padding in every row (keeps at least one column).

    Batches drawn from length buckets are padded to the global ``max_len``; trimming them to the
    batch's own longest text often halves the work for free.
    """
    if ids.dim() != 2 or ids.size(1) <= 1 or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        # when traced for ONNX, the length found here would become a constant of the graph: every later
        # input would be cut to the example's length (inputs arrive padded to max_len, so no trim is right)
        return ids
    used = (ids != pad_id).any(dim=0).nonzero()
    length = int(used[-1]) + 1 if used.numel() else 1
    return ids[:, :length] if length < ids.size(1) else ids


def _check(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


def _reverse_index(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """Row index into [B·L, H] that reverses each text's first ``length`` positions and leaves the padding in
    place, flattened to [B·L]."""
    pos = torch.arange(width, device=lengths.device)[None, :]
    flipped = lengths[:, None] - 1 - pos
    rows = torch.arange(lengths.size(0), device=lengths.device)[:, None] * width
    return (rows + torch.where(flipped >= 0, flipped, pos)).reshape(-1)


def _time_gather(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x[b, index[b, t]] for all b, t, as whole-row copies: ``index_select`` on [B·L, H] exports to ONNX Gather,
    where ``x.gather(1, index.expand(...))`` exported to GatherElements over an index as large as x, which was
    a fifth of the int8 LSTM's ONNX Runtime time (20 of 134 ms at batch 64 × 160 tokens)."""
    b, length, h = x.shape
    return x.reshape(b * length, h).index_select(0, index).view(b, length, h)


class _StackedRNN(nn.Module):
    """(Bi)directional LSTM/GRU layers whose outputs at real positions never depend on the padding.

    Each direction is its own single-layer RNN. The backward one reads every text reversed within its
    own length, so for both directions the padding comes after the real tokens and cannot reach them.
    Two ways to run a direction give the same numbers: ``packed`` (``pack_padded_sequence``; the
    padding is never computed, which suits cuDNN) and plain padded calls, which on CPU hit oneDNN's
    fused kernels and train about 3x faster than packed sequences (backward through packed RNNs runs
    a slow per-step loop on CPU). The default picks packed on GPU, padded on CPU.
    """

    def __init__(
        self, cell: str, input_size: int, hidden: int, layers: int, bidirectional: bool, dropout: float
    ):
        super().__init__()
        rnn_cls = nn.LSTM if cell == "lstm" else nn.GRU
        sizes = [input_size] + [hidden * (2 if bidirectional else 1)] * (layers - 1)
        self.fwd = nn.ModuleList(rnn_cls(n, hidden, batch_first=True) for n in sizes)
        self.bwd = (
            nn.ModuleList(rnn_cls(n, hidden, batch_first=True) for n in sizes) if bidirectional else None
        )
        self.drop = nn.Dropout(dropout)
        self.out_size = hidden * (2 if bidirectional else 1)

    @staticmethod
    def _run(rnn: nn.RNNBase, x: torch.Tensor, lengths: torch.Tensor, packed: bool) -> torch.Tensor:
        if not packed:
            return rnn(x)[0]
        seq = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        return pad_packed_sequence(rnn(seq)[0], batch_first=True, total_length=x.size(1))[0]

    def forward(
        self, x: torch.Tensor, lengths: torch.Tensor, packed: bool | None = None, zero_padding: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (outputs [B, L, out], final states [B, out]); lengths must be >= 1. The outputs at padding
        positions are zeros with ``zero_padding``, else whatever the RNN computed there (max pooling masks them
        itself: one fewer pass over [B, L, out], ~5 % of the int8 LSTM's ONNX time). Real positions never
        depend on the padding either way: it comes after the real tokens in both directions."""
        if packed is None:
            packed = x.is_cuda
        width = x.size(1)
        reverse = _reverse_index(lengths, width) if self.bwd is not None else None
        for i, fwd in enumerate(self.fwd):
            if i:
                x = self.drop(x)
            parts = [self._run(fwd, x, lengths, packed)]
            if self.bwd is not None:
                back = self._run(self.bwd[i], _time_gather(x, reverse), lengths, packed)
                parts.append(_time_gather(back, reverse))
            x = torch.cat(parts, dim=2) if len(parts) > 1 else parts[0]
        if zero_padding:
            x = x.masked_fill((torch.arange(width, device=x.device)[None, :] >= lengths[:, None])[..., None], 0.0)
        last = x.gather(1, (lengths - 1)[:, None, None].expand(-1, 1, x.size(2)))[:, 0]
        if self.bwd is not None:  # the backward direction ends on the first token
            half = x.size(2) // 2
            last = torch.cat([last[:, :half], x[:, 0, half:]], dim=1)
        return x, last


def _pool(out: torch.Tensor, last: torch.Tensor, lengths: torch.Tensor, pooling: str) -> torch.Tensor:
    if pooling == "last":
        return last
    if pooling == "max":
        mask = torch.arange(out.size(1), device=out.device)[None, :] < lengths[:, None]
        return out.masked_fill(~mask[..., None], float("-inf")).amax(dim=1)
    return out.sum(dim=1) / lengths.to(out.dtype)[:, None]  # padding positions are zero


class RNNClassifier(nn.Module):
    """Embedding -> (bi)LSTM/GRU that never sees padding -> max/mean/last pooling -> Linear.

    ``packed`` = None packs sequences on GPU and uses padded calls on CPU (same outputs, see _StackedRNN).
    """

    def __init__(
        self,
        vocab_size: int,
        num_outputs: int,
        embed_dim: int = 128,
        hidden: int = 128,
        layers: int = 1,
        bidirectional: bool = True,
        cell: str = "lstm",
        dropout: float = 0.3,
        pad_id: int = 0,
        pooling: str = "max",
        packed: bool | None = None,
    ):
        super().__init__()
        _check("cell", cell, RNN_CELLS)
        _check("pooling", pooling, RNN_POOLINGS)
        if layers < 1:
            raise ValueError(f"layers must be >= 1, got {layers}")
        self.pad_id, self.pooling, self.packed = pad_id, pooling, packed
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.rnn = _StackedRNN(cell, embed_dim, hidden, layers, bidirectional, dropout)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(self.rnn.out_size, num_outputs)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        ids = trim_to_longest(ids, self.pad_id)
        lengths = (ids != self.pad_id).sum(dim=1).clamp(min=1)  # an empty text reads one pad token
        out, last = self.rnn(self.drop(self.embed(ids)), lengths, self.packed, zero_padding=self.pooling != "max")
        return self.head(self.drop(_pool(out, last, lengths, self.pooling)))


class ArticleLSTM(nn.Module):
    """Article 3's Embedding(vocab, 16) -> LSTM(32) -> Dense, reading each text's real tokens only.

    The article ends in Dense(1, sigmoid); here the head returns logits and the loss applies the sigmoid
    or softmax, which is numerically safer and also covers more than two classes.
    """

    def __init__(
        self,
        vocab_size: int,
        num_outputs: int,
        embed_dim: int = 16,
        hidden: int = 32,
        pad_id: int = 0,
        packed: bool | None = None,
    ):
        super().__init__()
        self.pad_id, self.packed = pad_id, packed
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.rnn = _StackedRNN("lstm", embed_dim, hidden, 1, bidirectional=False, dropout=0.0)
        self.head = nn.Linear(hidden, num_outputs)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        ids = trim_to_longest(ids, self.pad_id)
        lengths = (ids != self.pad_id).sum(dim=1).clamp(min=1)
        return self.head(self.rnn(self.embed(ids), lengths, self.packed, zero_padding=False)[1])


class TextCNN(nn.Module):
    """Kim (2014): parallel 1-D convolutions over embeddings, max-pooled over real positions only."""

    def __init__(
        self,
        vocab_size: int,
        num_outputs: int,
        embed_dim: int = 128,
        channels: int = 100,
        kernel_sizes: tuple[int, ...] | list[int] = (3, 4, 5),
        dropout: float = 0.5,
        pad_id: int = 0,
    ):
        super().__init__()
        if not kernel_sizes or min(kernel_sizes) < 1:
            raise ValueError(f"kernel_sizes must be positive integers, got {kernel_sizes!r}")
        self.pad_id, self.kernel_sizes = pad_id, tuple(int(k) for k in kernel_sizes)
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.convs = nn.ModuleList(nn.Conv1d(embed_dim, channels, k) for k in self.kernel_sizes)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(channels * len(self.kernel_sizes), num_outputs)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        ids = trim_to_longest(ids, self.pad_id)
        widest = max(self.kernel_sizes)
        if ids.size(1) < widest:
            ids = F.pad(ids, (0, widest - ids.size(1)), value=self.pad_id)
        lengths = (ids != self.pad_id).sum(dim=1)
        x = self.embed(ids).transpose(1, 2)  # [B, E, L]
        pooled = []
        for k, conv in zip(self.kernel_sizes, self.convs, strict=True):
            h = F.relu(conv(x))  # [B, C, L - k + 1]
            # A window is real when it ends inside the text; a text shorter than k keeps window 0.
            last = (lengths - k).clamp(min=0)
            valid = torch.arange(h.size(2), device=h.device)[None, :] <= last[:, None]
            pooled.append(h.masked_fill(~valid[:, None, :], float("-inf")).amax(dim=2))
        return self.head(self.drop(torch.cat(pooled, dim=1)))


def _encoder_layers(model: nn.Module) -> nn.ModuleList | None:
    """The stack of transformer blocks (BERT ``encoder.layer``, others ``layers``/``h``/``block``)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and name.rsplit(".", 1)[-1] in ("layer", "layers", "h", "block"):
            return module
    return None


class TransformerClassifier(nn.Module):
    """A pretrained encoder (``AutoModel``) -> masked mean or [CLS] pooling -> dropout -> Linear."""

    def __init__(
        self,
        path: str | Path,
        num_outputs: int,
        pooling: str = "mean",
        freeze_layers: int = 0,
        dropout: float = 0.1,
    ):
        super().__init__()
        from danlu.data.text.pretrained import load_auto, resolve_pretrained

        _check("pooling", pooling, ("mean", "cls"))
        self.source = resolve_pretrained(path)
        self.pooling = pooling
        self.encoder = load_auto("model", self.source)
        if isinstance(getattr(self.encoder, "pooler", None), nn.Module):
            self.encoder.pooler = None  # BERT's tanh pooler is unused here and would get no gradient
        self.pad_id = self._pad_id(self.encoder.config)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(self.encoder.config.hidden_size, num_outputs)
        self.freeze(freeze_layers)

    def _pad_id(self, config) -> int:
        from danlu.data.text.pretrained import load_auto

        try:
            pad = load_auto("tokenizer", self.source).pad_token_id
        except Exception:  # noqa: BLE001 - fall back to the model config when no tokenizer ships
            pad = None
        if pad is None:
            pad = getattr(config, "pad_token_id", None)
        return int(pad) if pad is not None else 0

    def freeze(self, freeze_layers: int) -> None:
        """Freeze the embeddings and the first ``freeze_layers`` blocks; -1 freezes the whole encoder."""
        for p in self.encoder.parameters():
            p.requires_grad_(True)
        if freeze_layers == 0:
            return
        layers = _encoder_layers(self.encoder)
        if freeze_layers < 0 or layers is None or freeze_layers >= len(layers):
            frozen: list[nn.Module] = [self.encoder]
        else:
            embeddings = getattr(self.encoder, "embeddings", None)
            if embeddings is None:
                embeddings = self.encoder.get_input_embeddings()
            frozen = [embeddings, *layers[:freeze_layers]]
        for module in frozen:
            for p in module.parameters():
                p.requires_grad_(False)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Pooled sentence vectors [B, hidden] before the head.

        For MiniLM with mean pooling this is sentence-transformers' embedding before its L2 normalization.
        """
        ids = trim_to_longest(ids, self.pad_id)
        mask = ids != self.pad_id
        hidden = self.encoder(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.embed(ids)))
