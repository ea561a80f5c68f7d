"""The classifier: one encoder shared by two heads (coarse and fine answer
type), and an ensemble of a few such members in one file.

Each member reads a question two ways and concatenates them:
- a bag of lexical features (`features.py`: words, n-grams, the first words,
  the wh-word and a guessed head noun), averaged embeddings: where the answer
  type usually sits, and cheap to train;
- convolutions of widths 1-3 over WordPiece embeddings, max-pooled: they
  generalise to phrasings and sub-words the feature list did not see.
Both heads are trained jointly on that shared representation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from demos.questions.wordpiece import PAD_ID, UNK_ID


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    n_coarse: int
    n_fine: int
    n_features: int = 2  # feature vocabulary size (0 = padding, 1 = bias)
    n_rows: int = 0  # embedding rows: tokens seen in training (+ specials); 0 = whole vocab
    max_len: int = 64
    dim: int = 64
    channels: int = 64  # per convolution width; 0 disables the convolutional branch
    widths: tuple[int, ...] = (1, 2, 3)
    dropout: float = 0.5
    members: int = 1
    pretrained_dim: int = 0  # >0: the convolutions read a frozen, shared token table of this width

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "ModelConfig":
        return cls(**{**data, "widths": tuple(data["widths"])})


class Member(nn.Module):
    """One encoder + two heads; returns (coarse_logits, fine_logits)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.bag = nn.EmbeddingBag(cfg.n_features, cfg.dim, mode="mean", padding_idx=0)
        width = cfg.dim
        if cfg.channels:
            d_in = cfg.pretrained_dim or cfg.dim
            if not cfg.pretrained_dim:
                self.tok = nn.Embedding(cfg.n_rows or cfg.vocab_size, cfg.dim, padding_idx=PAD_ID)
            self.convs = nn.ModuleList(nn.Conv1d(d_in, cfg.channels, w, padding=w - 1) for w in cfg.widths)
            width += cfg.channels * len(cfg.widths)
        self.drop = nn.Dropout(cfg.dropout)
        self.coarse = nn.Linear(width, cfg.n_coarse)
        self.fine = nn.Linear(width, cfg.n_fine)

    def forward(self, rows: torch.Tensor, feats: torch.Tensor,
                vectors: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """`rows`: token embedding rows (0 = padding); `feats`: feature ids (0 = padding);
        `vectors`: the rows' pretrained vectors (when `pretrained_dim`)."""
        parts = [self.bag(feats)]
        if self.cfg.channels:
            t = rows.shape[1]
            pad = rows.eq(PAD_ID).unsqueeze(1)
            x = (vectors if self.cfg.pretrained_dim else self.tok(rows)).transpose(1, 2)
            for conv in self.convs:
                h = F.relu(conv(x))[:, :, :t]
                parts.append(h.masked_fill(pad, 0.0).amax(dim=2))  # relu >= 0, so 0 never wins wrongly
        h = self.drop(torch.cat(parts, dim=1))
        return self.coarse(h), self.fine(h)


class Ensemble(nn.Module):
    """Averages the members' probabilities; one forward pass for a batch.

    `rows` maps tokenizer ids to embedding rows. Only tokens seen in training
    get a row of their own; every other id shares [UNK]'s row, which word
    dropout trained to mean "a word I do not know" (an untrained random row
    would be noise). It also keeps the file small.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("rows", torch.arange(cfg.vocab_size, dtype=torch.int32))
        if cfg.pretrained_dim:  # frozen token vectors (from MiniLM, see train.py), one copy for all members
            self.register_buffer("vectors", torch.zeros(cfg.n_rows or cfg.vocab_size, cfg.pretrained_dim))
        self.members = nn.ModuleList(Member(cfg) for _ in range(cfg.members))

    def forward(self, ids: torch.Tensor, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(coarse_probs, fine_probs) for tokenizer ids, each averaged over members."""
        rows = self.rows[ids].long()
        vectors = self.vectors[rows] if self.cfg.pretrained_dim else None
        coarse, fine = zip(*(m(rows, feats, vectors) for m in self.members))
        avg = lambda logits: torch.stack([F.softmax(z, dim=-1) for z in logits]).mean(0)  # noqa: E731
        return avg(coarse), avg(fine)


def row_map(vocab_size: int, seen_ids: set[int], n_special: int = 5) -> list[int]:
    """Tokenizer id -> embedding row: specials keep theirs, seen tokens get the
    next rows in id order, the rest share [UNK]'s."""
    rows = [UNK_ID] * vocab_size
    for i in range(n_special):
        rows[i] = i
    next_row = n_special
    for i in sorted(j for j in seen_ids if j >= n_special):
        rows[i] = next_row
        next_row += 1
    return rows
