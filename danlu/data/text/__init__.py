"""Text building blocks: reading labelled text files, tokenizers, vocabularies, pretrained tokenizers.

Nothing here imports torch, transformers or jieba at import time, so recipes validate and the CLI
answers quickly; the heavy libraries load inside the functions that need them.
"""

from danlu.data.text.files import TextTable, read_text_table
from danlu.data.text.pretrained import PretrainedTokenizer, resolve_pretrained
from danlu.data.text.tokenizers import (
    TOKENIZERS,
    CharTokenizer,
    JiebaTokenizer,
    WordTokenizer,
    choose_tokenizer,
    make_tokenizer,
)
from danlu.data.text.vocab import Vocab, choose_max_len

__all__ = [
    "TOKENIZERS",
    "CharTokenizer",
    "JiebaTokenizer",
    "PretrainedTokenizer",
    "TextTable",
    "Vocab",
    "WordTokenizer",
    "choose_max_len",
    "choose_tokenizer",
    "make_tokenizer",
    "read_text_table",
    "resolve_pretrained",
]
