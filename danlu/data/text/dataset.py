"""Text classification data: CSV/TSV/JSONL files → token-id tensors, vocabulary or pretrained tokenizer.

The vocabulary is built from the training split only and saved as vocab.json in the run (or the
pretrained tokenizer as tokenizer/), so prediction encodes new texts exactly as training did.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from danlu.data.locate import find_dataset, where_looked
from danlu.data.splits import Splits, carve_splits
from danlu.errors import DataError
from danlu.recipe import DataConfig
from danlu.schema import Schema

# Known corpora: folder name → (file stem per split, text column, label column)
CORPORA = {
    "chnsenticorp": ({"train": "train", "val": "dev", "test": "test"}, "text_a", "label"),
    # GLUE's SST-2 test set is unlabelled: dev is the test split, validation is carved from train
    "sst2": ({"train": "train", "test": "dev"}, "sentence", "label"),
}
SENTIMENT_NAMES = {"0": "negative", "1": "positive"}  # both corpora label 0 = negative, 1 = positive
EXTENSIONS = (".tsv", ".csv", ".jsonl", ".json", ".txt")
SPLIT_NAMES = {"train": ("train",), "val": ("val", "valid", "validation", "dev"), "test": ("test",)}
DEFAULT_PRETRAINED_MAX_LEN = 128  # transformer cost grows with length; 128 covers 95 % of SST-2 dev


def _find_file(folder: Path, stems: tuple[str, ...]) -> Path | None:
    for stem in stems:
        for ext in EXTENSIONS:
            for suffix in (ext, ext + ".gz"):
                p = folder / f"{stem}{suffix}"
                if p.is_file():
                    return p
    return None


def _split_files(cfg: DataConfig, data_dir: Path | None) -> tuple[dict[str, Path], str, str | int, str | int]:
    """Which file holds which split, and the text/label columns to read."""
    text_col, label_col = cfg.text_column, cfg.label_column
    if cfg.train or cfg.path:
        files = {"train": Path(cfg.train or cfg.path)}
        if cfg.val:
            files["val"] = Path(cfg.val)
        if cfg.test:
            files["test"] = Path(cfg.test)
        return files, "text", text_col, label_col
    corpus = cfg.name if cfg.name in CORPORA else None
    root = find_dataset(corpus, cfg.root, data_dir) if corpus or cfg.root else None
    if root is None:
        if corpus:
            raise DataError(f"{corpus} not found (looked in {where_looked(corpus, data_dir)})",
                            hint=f"set data.root to the {corpus} folder, or DANLU_DATA to the folder holding it")
        raise DataError("text data needs data.path (one file), data.train/val/test (files) or data.root (a folder "
                        "with train/dev/test files)", hint="e.g. data.path=reviews.csv data.text_column=review")
    if root.is_file():
        return {"train": root}, str(root), text_col, label_col
    name = root.name.lower().replace("-", "")
    if corpus in CORPORA or name in CORPORA:
        stems, t, lab = CORPORA[corpus if corpus in CORPORA else name]
        files = {split: _find_file(root, (stem,)) for split, stem in stems.items()}
        missing = [f"{stems[s]}" for s, f in files.items() if f is None]
        if missing:
            raise DataError(f"{root}: missing {', '.join(missing)} file(s)",
                            hint="expected e.g. train.tsv.gz, dev.tsv.gz")
        text_col = t if text_col == "auto" else text_col
        label_col = lab if label_col == "auto" else label_col
        return files, corpus or name, text_col, label_col  # type: ignore[return-value]
    files = {s: f for s, stems in SPLIT_NAMES.items() if (f := _find_file(root, stems)) is not None}
    if "train" not in files:
        raise DataError(f"no train file in {root}", hint=f"name it train{{{','.join(EXTENSIONS)}}}[.gz]")
    return files, str(root), text_col, label_col


def _sort_labels(labels: set[str]) -> list[str]:
    def key(s: str) -> tuple:
        return (0, float(s), s) if re.fullmatch(r"-?\d+(\.\d+)?", s) else (1, 0.0, s)

    return sorted(labels, key=key)


CHARS_PER_TOKEN = 64  # a token longer than this (after whitespace) is past any real word or sub-word


class TextEncoder:
    """Texts → padded id tensors, with a word/char/jieba vocabulary or a pretrained tokenizer."""

    def __init__(self, tokenizer_name: str, max_len: int, vocab: Any = None, pretrained: Any = None):
        self.tokenizer_name, self.max_len, self.vocab, self.pretrained = tokenizer_name, max_len, vocab, pretrained
        self._tok = None

    @property
    def pad_id(self) -> int:
        return self.pretrained.pad_id if self.pretrained is not None else 0

    @property
    def max_chars(self) -> int:
        """Characters of a text that can reach the model: ``max_len`` tokens of up to CHARS_PER_TOKEN each.
        Texts are cut here before tokenizing: a 100 MB line to ``danlu predict --file`` was tokenized whole
        (2.4 GB) to keep its first max_len tokens."""
        return self.max_len * CHARS_PER_TOKEN + 1024

    def cut(self, texts: list[str]) -> list[str]:
        limit = self.max_chars
        return [t[:limit] if len(t) > limit else t for t in texts]

    def tokens(self, texts: list[str]) -> list[list[str]]:
        if self._tok is None:
            from danlu.data.text.tokenizers import make_tokenizer

            self._tok = make_tokenizer(self.tokenizer_name)
        return [self._tok.tokenize(t) for t in self.cut(texts)]

    def encode(self, texts: list[str],
               token_lists: list[list[str]] | None = None) -> tuple[np.ndarray, np.ndarray, int]:
        if self.pretrained is not None:
            return self.pretrained.encode(self.cut(texts), self.max_len)
        return self.vocab.encode(token_lists if token_lists is not None else self.tokens(texts), self.max_len)

    def tensor(self, texts: list[str]):
        import torch

        ids, _, _ = self.encode(texts)
        return torch.from_numpy(ids)

    @classmethod
    def from_run(cls, run_dir: Path, schema: Schema) -> TextEncoder:
        t = schema.text
        if t["tokenizer"] == "pretrained":
            from danlu.data.text.pretrained import PretrainedTokenizer
            from danlu.errors import DanluError, RunError

            folder = run_dir / "tokenizer"
            try:
                tokenizer = PretrainedTokenizer(folder if folder.is_dir() else t["pretrained"])
            except DanluError:
                raise
            except Exception as e:  # the tokenizers library's own errors for a damaged tokenizer.json
                raise RunError(f"{folder} is damaged: the tokenizer cannot be loaded ({str(e)[:160]})",
                               hint="restore it from a copy, or train the run again") from None
            return cls("pretrained", t["max_len"], pretrained=tokenizer)
        from danlu.data.text.vocab import Vocab
        from danlu.errors import RunError
        from danlu.runs.files import read_json

        vocab_path = run_dir / "vocab.json"
        if not vocab_path.exists():
            raise DataError(f"{vocab_path} is missing", hint="the run folder is incomplete; train it again")
        again = "restore it from a copy, or train the run again"
        try:
            vocab = Vocab.from_json(read_json(vocab_path))
        except (TypeError, ValueError, AttributeError) as e:  # not a dict with a list of unique strings
            raise RunError(f"{vocab_path} is damaged: {e}", hint=again) from None
        if len(vocab) != t["vocab_size"]:
            raise RunError(f"{vocab_path} has {len(vocab)} tokens, schema.json says text.vocab_size "
                           f"{t['vocab_size']}: they are not from the same run", hint=again)
        return cls(t["tokenizer"], t["max_len"], vocab=vocab)


def load_text(cfg: DataConfig, seed: int, hints: dict, data_dir: Path | None = None) -> tuple[Splits, Schema]:
    """Labelled text files → token-id splits: read, label, carve, choose a tokenizer, encode."""
    import torch

    from danlu.data.tensors import TensorSplit

    files, source, text_col, label_col = _split_files(cfg, data_dir)
    notes: list[str] = []
    tables = _read_labelled(files, text_col, label_col, notes)
    classes, ys = _label_ids(tables, files, source)
    parts = carve_splits({s: (tables[s][0], ys[s]) for s in tables}, val_fraction=cfg.val_fraction,
                         test_fraction=cfg.test_fraction, limit_train=cfg.limit_train, seed=seed, notes=notes)
    texts = {s: list(p[0]) for s, p in parts.items()}
    ys = {s: np.asarray(p[1], np.int64) for s, p in parts.items()}
    tok_name = _tokenizer_name(cfg, hints, texts["train"], notes)
    encoder, token_lists, text_info, artifacts, stats = _encoder(tok_name, cfg, hints, texts, notes)
    encoded = {}
    for s in ("train", "val", "test"):
        ids, lens, truncated = encoder.encode(texts[s], token_lists[s] if token_lists else None)
        if truncated:
            notes.append(f"{s}: {truncated} of {len(ids)} texts truncated to {encoder.max_len} tokens "
                         "(data.max_len)")
        stats[f"truncated_{s}"] = truncated
        encoded[s] = TensorSplit(torch.from_numpy(ids), torch.from_numpy(ys[s]), texts[s])
    schema = Schema(kind="text", task="classification", input_shape=[text_info["max_len"]], classes=classes,
                    text=text_info, source=source)
    splits = Splits(encoded["train"], encoded["val"], encoded["test"], notes, artifacts)
    splits.stats = stats
    return splits, schema


def _read_labelled(files: dict[str, Path], text_col: Any, label_col: Any, notes: list[str]) -> dict[str, tuple]:
    """Each split file's (texts, labels); skipped rows and the reader's notes go to ``notes``."""
    from danlu.data.text.files import read_text_table

    tables = {}
    for split, path in files.items():
        table = read_text_table(path, text_col, label_col)
        if table.labels is None:
            raise DataError(f"{path} has no label column", hint=f"set data.label_column; columns: {table.columns}")
        if table.skipped:
            shown = ", ".join(f"line {ln} ({why})" for ln, why in table.skipped[:3])
            notes.append(f"{path.name}: skipped {len(table.skipped)} row(s): {shown}")
        notes.extend(f"{path.name}: {n}" for n in table.notes)
        if len(table) == 0:
            raise DataError(f"{path} has no usable rows", hint="every row had an empty text")
        tables[split] = (table.texts, table.labels)
    return tables


def _label_ids(tables: dict[str, tuple], files: dict[str, Path], source: str) -> tuple[list[str], dict]:
    """The classes (from the training file) and each split's labels as class indices."""
    classes = _sort_labels(set(tables["train"][1]))
    if len(classes) < 2:
        raise DataError(f"{files['train']}: the label column has only one class ({classes[0]!r})",
                        hint="classification needs at least two labels; check data.label_column")
    lookup = {c: i for i, c in enumerate(classes)}
    for split, (_, labels) in tables.items():
        unseen = sorted(set(labels) - set(lookup))
        if unseen:
            raise DataError(f"{files[split]}: labels {unseen[:5]} never occur in the training file",
                            hint=f"training labels: {classes}")
    ys = {s: np.array([lookup[v] for v in labs], np.int64) for s, (_, labs) in tables.items()}
    if source in CORPORA and set(classes) == set(SENTIMENT_NAMES):
        classes = [SENTIMENT_NAMES[c] for c in classes]
    return classes, ys


def _tokenizer_name(cfg: DataConfig, hints: dict, train_texts: list[str], notes: list[str]) -> str:
    """The model's own tokenizer, the recipe's, or (auto) the one the training texts call for."""
    tok_name = hints.get("tokenizer") or cfg.tokenizer
    if hints.get("tokenizer") and cfg.tokenizer.lower() not in ("auto", hints["tokenizer"]):
        notes.append(f"this model reads text with its own {hints['tokenizer']} tokenizer: "
                     f"data.tokenizer={cfg.tokenizer} is not used")
    if tok_name == "auto":
        from danlu.data.text.tokenizers import choose_tokenizer

        tok_name = choose_tokenizer(train_texts)
    elif tok_name == "word":
        from danlu.data.text.tokenizers import cjk_fraction

        if cjk_fraction(train_texts[:2000]) >= 0.3:  # the founding article's mistake: no spaces, no words
            notes.append("data.tokenizer=word splits on spaces, and this Chinese/Japanese text has few: whole "
                         "sentences become single tokens; use data.tokenizer=char or jieba (or auto)")
    return tok_name


def _encoder(tok_name: str, cfg: DataConfig, hints: dict, texts: dict[str, list[str]],
             notes: list[str]) -> tuple[TextEncoder, Any, dict, dict, dict]:
    """(encoder, token lists or None, schema's text info, run-folder artifacts, statistics) for a tokenizer:
    a pretrained one with its own vocabulary, or ours with a vocabulary built on the training texts."""
    stats: dict[str, Any] = {"tokenizer": tok_name}
    if tok_name == "pretrained":
        from danlu.data.text.pretrained import PretrainedTokenizer

        name = hints.get("pretrained", "minilm")
        tok = PretrainedTokenizer(name)
        max_len = min(cfg.max_len or DEFAULT_PRETRAINED_MAX_LEN, tok.max_positions)
        text_info = {"tokenizer": "pretrained", "pretrained": str(name), "pad_id": tok.pad_id,
                     "vocab_size": tok.vocab_size, "max_len": max_len}
        artifacts = {"tokenizer": lambda run_dir: tok.save(run_dir / "tokenizer")}
        return TextEncoder("pretrained", max_len, pretrained=tok), None, text_info, artifacts, stats
    from danlu.data.text.vocab import Vocab, choose_max_len

    encoder = TextEncoder(tok_name, 0)
    token_lists = {s: encoder.tokens(t) for s, t in texts.items()}
    vocab = Vocab.build(token_lists["train"], min_freq=cfg.min_freq, max_size=cfg.max_vocab)
    lengths = [len(t) for t in token_lists["train"]]
    max_len = cfg.max_len or choose_max_len(lengths, 95)
    longest = max(max(len(t) for t in lists) for lists in token_lists.values() if lists)
    if cfg.max_len and cfg.max_len > 4 * longest:  # the id matrices are rows x max_len: 1e8 once asked 467 GiB
        max_len = longest
        notes.append(f"data.max_len={cfg.max_len} is far beyond the longest text ({longest} tokens): using {longest}")
    encoder.vocab, encoder.max_len = vocab, max_len
    for s in ("val", "test"):
        stats[f"oov_rate_{s}"] = vocab.oov_rate(token_lists[s])
    stats["length_percentiles"] = {p: float(np.percentile(lengths, p)) for p in (50, 90, 95, 99, 100)}
    text_info = {"tokenizer": tok_name, "pad_id": 0, "vocab_size": len(vocab.itos), "max_len": max_len}

    def write_vocab(run_dir: Path, vocab=vocab) -> None:
        import json

        from danlu.runs.files import atomic_write_text

        atomic_write_text(run_dir / "vocab.json", json.dumps(vocab.to_json(), ensure_ascii=False))

    return encoder, token_lists, text_info, {"vocab.json": write_vocab}, stats
