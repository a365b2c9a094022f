"""Tokenizers that fit the language: characters or jieba words for Chinese, regex words for English.

A whitespace split (the article's Keras ``Tokenizer``) turns a Chinese sentence into one token, so
every sentence is its own vocabulary entry and the model learns nothing that generalizes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from danlu.errors import unknown_name

# CJK unified ideographs (with extension A and compatibility), kana, hangul, CJK punctuation.
_CJK = re.compile(
    r"[\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]"
)


class CharTokenizer:
    """Every non-space character is a token, except that ASCII letter/digit runs stay whole words.

    Keeping "iPhone" or "2015" as one (lower-cased) token makes mixed Chinese/English text sane.
    """

    name = "char"
    _pattern = re.compile(r"[A-Za-z0-9]+|\S")

    def tokenize(self, text: str) -> list[str]:
        return [t.lower() if t.isascii() else t for t in self._pattern.findall(text)]

    def __repr__(self) -> str:
        return "CharTokenizer()"


class WordTokenizer:
    """Lower-cased words (with an apostrophe suffix such as "don't") and single punctuation marks."""

    name = "word"
    _pattern = re.compile(r"\w+(?:'\w+)?|[^\w\s]")

    def tokenize(self, text: str) -> list[str]:
        return self._pattern.findall(text.lower())

    def __repr__(self) -> str:
        return "WordTokenizer()"


class JiebaTokenizer:
    """Chinese word segmentation with jieba; its dictionary loads on first use, with its log silenced."""

    name = "jieba"

    def __init__(self) -> None:
        self._cut = None

    def _load(self):
        import logging

        import jieba

        jieba.setLogLevel(logging.WARNING)
        jieba.initialize()
        return jieba.lcut

    def tokenize(self, text: str) -> list[str]:
        if self._cut is None:
            self._cut = self._load()
        return [t.lower() if t.isascii() else t for t in self._cut(text) if t.strip()]

    def __getstate__(self) -> dict:
        return {}  # the loaded function does not pickle; reload in the worker

    def __setstate__(self, state: dict) -> None:
        self._cut = None

    def __repr__(self) -> str:
        return "JiebaTokenizer()"


Tokenizer = CharTokenizer | WordTokenizer | JiebaTokenizer
TOKENIZERS: dict[str, type] = {"char": CharTokenizer, "word": WordTokenizer, "jieba": JiebaTokenizer}


def cjk_fraction(texts: Sequence[str], sample: int = 2000) -> float:
    """Share of CJK characters among the non-space characters of an evenly spaced sample of texts."""
    if not texts:
        return 0.0
    step = max(1, len(texts) // sample)
    chars = cjk = 0
    for text in texts[::step][:sample]:
        stripped = "".join(text.split())
        chars += len(stripped)
        cjk += len(_CJK.findall(stripped))
    return cjk / chars if chars else 0.0


def choose_tokenizer(texts: Sequence[str], threshold: float = 0.3) -> str:
    """Pick "char" when at least 30 % of the non-space characters are CJK, else "word"."""
    return "char" if cjk_fraction(texts) >= threshold else "word"


def make_tokenizer(name: str, texts: Sequence[str] | None = None) -> Tokenizer:
    """Build a tokenizer by name; "auto" looks at ``texts`` (the training texts) to pick char or word."""
    key = str(name).strip().lower()
    if key == "auto":
        if texts is None:
            raise ValueError("make_tokenizer('auto') needs the training texts to choose from")
        key = choose_tokenizer(texts)
    if key not in TOKENIZERS:
        raise unknown_name("tokenizer", name, [*TOKENIZERS, "auto"])
    return TOKENIZERS[key]()
