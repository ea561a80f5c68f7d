"""The classifier: a small transformer encoder (BERT's layout) shared by two
heads, coarse and fine answer type.

The same class is the shipped student (3 layers over our 10k WordPiece
vocabulary) and, with MiniLM's sizes, the training-only teacher in
`teacher.py`; BERT's token-type embedding is folded into the position table
because questions are single segments.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from demos.questions.wordpiece import PAD_ID


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    n_coarse: int
    n_fine: int
    max_len: int = 64
    dim: int = 384
    heads: int = 12
    inner: int = 1536
    layers: int = 3
    dropout: float = 0.1
    eps: float = 1e-12

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "ModelConfig":
        return cls(**data)


class Layer(nn.Module):
    """Post-norm transformer layer, as in BERT (so MiniLM's weights load as they are)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.dim
        self.heads = cfg.heads
        self.p = cfg.dropout
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.ln1 = nn.LayerNorm(d, eps=cfg.eps)
        self.up, self.down = nn.Linear(d, cfg.inner), nn.Linear(cfg.inner, d)
        self.ln2 = nn.LayerNorm(d, eps=cfg.eps)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape

        def split(z: torch.Tensor) -> torch.Tensor:
            return z.view(b, t, self.heads, d // self.heads).transpose(1, 2)

        a = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(x)), split(self.v(x)), attn_mask=bias,
                                           dropout_p=self.p if self.training else 0.0)
        x = self.ln1(x + self.drop(self.o(a.transpose(1, 2).reshape(b, t, d))))
        return self.ln2(x + self.drop(self.down(F.gelu(self.up(x)))))


class Encoder(nn.Module):
    """Token ids -> (coarse_logits, fine_logits); the question is mean-pooled
    over its tokens ([CLS] and [SEP] included, padding not)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.word = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.pos = nn.Embedding(cfg.max_len, cfg.dim)
        self.ln = nn.LayerNorm(cfg.dim, eps=cfg.eps)
        self.drop = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(Layer(cfg) for _ in range(cfg.layers))
        self.coarse = nn.Linear(cfg.dim, cfg.n_coarse)
        self.fine = nn.Linear(cfg.dim, cfg.n_fine)

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ids = ids[:, : self.cfg.max_len]
        keep = ids.ne(PAD_ID)
        x = self.drop(self.ln(self.word(ids) + self.pos.weight[: ids.shape[1]]))
        bias = torch.zeros(keep.shape, dtype=x.dtype).masked_fill(~keep, -1e4)[:, None, None, :]
        for layer in self.layers:
            x = layer(x, bias)
        m = keep.unsqueeze(-1).to(x.dtype)
        h = self.drop((x * m).sum(1) / m.sum(1).clamp(min=1))
        return self.coarse(h), self.fine(h)

    def probabilities(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        zc, zf = self(ids)
        return F.softmax(zc, dim=-1), F.softmax(zf, dim=-1)
