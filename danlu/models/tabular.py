"""The tabular net: learned embeddings for category codes beside the numeric columns, then an MLP.

Its input is the column plan's row (danlu/data/columns.py): numbers (quantile-normalized), missing flags
and hashed text counts, then one integer code per category column. Each code column gets its own
embedding, sized by its number of values (``table.embed_dims``); one-hot columns, the old way, gave a
3,391-value job title 3,391 inputs.
"""

from __future__ import annotations

import torch
from torch import nn

from danlu.schema import Schema


class TabularNet(nn.Module):
    def __init__(self, schema: Schema, hidden: list[int], dropout: float = 0.1, embed_dropout: float = 0.0,
                 batch_norm: bool = True):
        super().__init__()
        table = schema.table
        width = schema.input_shape[0]
        codes = [int(j) for j in table.get("code_columns", [])]
        numeric = [j for j in range(width) if j not in set(codes)]
        self.register_buffer("numeric_index", torch.tensor(numeric, dtype=torch.long), persistent=False)
        self.register_buffer("code_index", torch.tensor(codes, dtype=torch.long), persistent=False)
        cards = [int(c) for c in table.get("cardinalities", [])]
        self.register_buffer("code_max", torch.tensor([c - 1 for c in cards], dtype=torch.long), persistent=False)
        self.embeddings = nn.ModuleList(nn.Embedding(c, d) for c, d in zip(cards, table.get("embed_dims", []),
                                                                           strict=True))
        self.embed_dropout = nn.Dropout(embed_dropout)
        layers: list[nn.Module] = []
        size = len(numeric) + sum(e.embedding_dim for e in self.embeddings)
        for h in hidden:
            layers += [nn.Linear(size, h), *([nn.BatchNorm1d(h)] if batch_norm else []), nn.ReLU(), nn.Dropout(dropout)]
            size = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(size, schema.num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [x.index_select(1, self.numeric_index)]
        if len(self.embeddings):
            codes = x.index_select(1, self.code_index).long()
            codes = torch.minimum(codes.clamp(min=0), self.code_max)  # an out-of-range code reads as "unseen"
            embedded = [emb(codes[:, k]) for k, emb in enumerate(self.embeddings)]
            parts.append(self.embed_dropout(torch.cat(embedded, 1)))
        return self.head(self.body(torch.cat(parts, 1)))
