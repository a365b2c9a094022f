"""Token → id table built from the training texts only, and padding/truncation to a fixed length.

Building it from train alone keeps validation honest: unseen tokens in val/test become ``<unk>``,
exactly as they will for new data at prediction time.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

PAD = "<pad>"
UNK = "<unk>"


class Vocab:
    """Ids: ``<pad>`` = 0, ``<unk>`` = 1, then tokens by training frequency (ties by token)."""

    pad_id = 0
    unk_id = 1

    def __init__(self, tokens: Sequence[str]):
        if list(tokens[:2]) != [PAD, UNK]:
            raise ValueError(f"a Vocab starts with {PAD!r}, {UNK!r}; got {list(tokens[:2])}")
        self.itos: list[str] = list(tokens)
        self.stoi: dict[str, int] = {t: i for i, t in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("duplicate tokens in vocabulary")

    @classmethod
    def build(
        cls, token_lists: Iterable[Sequence[str]], min_freq: int = 1, max_size: int | None = None
    ) -> Vocab:
        """Count tokens; keep those seen ``min_freq`` times, the most frequent first.

        ``max_size`` caps the whole table including ``<pad>`` and ``<unk>``, i.e. the embedding rows.
        """
        counts: Counter[str] = Counter()
        for tokens in token_lists:
            counts.update(tokens)
        counts.pop(PAD, None)
        counts.pop(UNK, None)
        kept = sorted((t for t, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], t))
        if max_size is not None:
            kept = kept[: max(0, max_size - 2)]
        return cls([PAD, UNK, *kept])

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.itos == other.itos

    def __repr__(self) -> str:
        return f"Vocab(size={len(self)})"

    def to_json(self) -> dict:
        """A JSON-ready dict for the run folder; ``Vocab.from_json`` restores it exactly."""
        return {"format": "danlu.vocab/1", "pad": PAD, "unk": UNK, "tokens": list(self.itos)}

    @classmethod
    def from_json(cls, data: dict) -> Vocab:
        if not isinstance(data, dict) or not isinstance(data.get("tokens"), list):
            raise TypeError("not a danlu vocabulary (expected a dict with a 'tokens' list)")
        return cls(data["tokens"])

    def ids(self, tokens: Sequence[str]) -> list[int]:
        get, unk = self.stoi.get, self.unk_id
        return [get(t, unk) for t in tokens]

    def encode(
        self, token_lists: Sequence[Sequence[str]], max_len: int
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """Ids right-padded with 0 to ``max_len`` (longer texts keep their first tokens).

        Returns (ids int64 [N, max_len], lengths int64 [N], number of truncated texts).
        """
        if max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {max_len}")
        out = np.zeros((len(token_lists), max_len), dtype=np.int64)
        lengths = np.zeros(len(token_lists), dtype=np.int64)
        truncated = 0
        get, unk = self.stoi.get, self.unk_id
        for i, tokens in enumerate(token_lists):
            if len(tokens) > max_len:
                truncated += 1
                tokens = tokens[:max_len]
            n = len(tokens)
            if n:
                out[i, :n] = [get(t, unk) for t in tokens]
            lengths[i] = n
        return out, lengths, truncated

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Tokens of one row of ids, padding dropped (for showing what the model saw)."""
        return [self.itos[i] for i in ids if i != self.pad_id]

    def oov_rate(self, token_lists: Iterable[Sequence[str]]) -> float:
        """Share of tokens that map to ``<unk>`` (0.0 when there are no tokens)."""
        total = oov = 0
        for tokens in token_lists:
            total += len(tokens)
            oov += sum(t not in self.stoi for t in tokens)
        return oov / total if total else 0.0


def choose_max_len(lengths: Sequence[int] | np.ndarray, percentile: float = 95, cap: int = 512) -> int:
    """A length that covers ``percentile`` % of texts whole, at most ``cap`` and at least 1."""
    arr = np.asarray(lengths)
    if arr.size == 0:
        return 1
    return int(min(cap, max(1, math.ceil(float(np.percentile(arr, percentile))))))
