"""all-MiniLM-L6-v2 with plain torch + `tokenizers`: a BERT forward pass, mean
pooling over the real tokens, L2 normalisation (what sentence-transformers does
for this model), without transformers or sentence-transformers.

Weights are HF BertModel names in safetensors: fp32, fp16, or int8 rows with a
per-row fp16 scale (`<name>.scale`), all computed in fp32. Padding is off for one
text (a query pays for its own tokens only); a batch is padded to its longest
text with an attention mask."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

SCALE = ".scale"
#: sentence-transformers' max_seq_length for this model (its tokenizer.json says 128).
MAX_TOKENS = 256


@dataclass(frozen=True)
class BertConfig:
    vocab_size: int = 30522
    hidden_size: int = 384
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 1536
    max_position_embeddings: int = 512
    layer_norm_eps: float = 1e-12

    @classmethod
    def from_json(cls, d: dict) -> "BertConfig":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def load_tokenizer(path: Path, max_tokens: int = MAX_TOKENS) -> Tokenizer:
    tok = Tokenizer.from_file(str(path))
    tok.no_padding()
    tok.enable_truncation(max_tokens)
    return tok


def quantize(state: dict[str, torch.Tensor], dtype: str) -> dict[str, torch.Tensor]:
    """What the model folder stores: "fp32", "fp16", or "int8" (2-D float weights as
    int8 rows with an fp16 scale each; everything else fp16)."""
    out = {}
    for name, t in state.items():
        if not t.is_floating_point() or dtype == "fp32":
            out[name] = t.contiguous()
        elif dtype == "int8" and t.dim() == 2:
            scale = t.abs().amax(1, keepdim=True).clamp(min=1e-8) / 127
            out[name] = torch.round(t / scale).to(torch.int8)
            out[name + SCALE] = scale.half()
        else:
            out[name] = t.half()
    return out


def dequantize(stored: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for name, t in stored.items():
        if name.endswith(SCALE):
            continue
        if t.dtype == torch.int8:
            out[name] = t.float() * stored[name + SCALE].float()
        else:
            out[name] = t.float() if t.is_floating_point() else t
    return out


def save_weights(path: Path, state: dict[str, torch.Tensor], dtype: str) -> None:
    state = {k: v for k, v in state.items() if not k.endswith("position_ids")}
    save_file(quantize(state, dtype), str(path), metadata={"format": "pt", "stored": dtype})


class MiniLM(torch.nn.Module):
    """BertModel's forward (absolute positions, token type 0, exact GELU) for inference."""

    def __init__(self, cfg: BertConfig, state: dict[str, torch.Tensor]):
        super().__init__()
        self.cfg = cfg
        self.w = {k: v.contiguous() for k, v in state.items()}
        self.heads = cfg.num_attention_heads
        self.head_dim = cfg.hidden_size // cfg.num_attention_heads

    def _ln(self, x, name):
        return F.layer_norm(x, (x.shape[-1],), self.w[name + ".weight"], self.w[name + ".bias"],
                            self.cfg.layer_norm_eps)

    def _lin(self, x, name):
        return F.linear(x, self.w[name + ".weight"], self.w[name + ".bias"])

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """ids, mask: (batch, tokens) -> L2-normalised mean-pooled vectors (batch, hidden)."""
        w, (b, n) = self.w, ids.shape
        x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = self._ln(x, "embeddings.LayerNorm")
        attn_mask = mask[:, None, None, :].bool()
        for i in range(self.cfg.num_hidden_layers):
            p = f"encoder.layer.{i}."
            q, k, v = (self._lin(x, p + f"attention.self.{m}").view(b, n, self.heads, self.head_dim).transpose(1, 2)
                       for m in ("query", "key", "value"))
            ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=1 / math.sqrt(self.head_dim))
            ctx = ctx.transpose(1, 2).reshape(b, n, self.cfg.hidden_size)
            x = self._ln(x + self._lin(ctx, p + "attention.output.dense"), p + "attention.output.LayerNorm")
            h = F.gelu(self._lin(x, p + "intermediate.dense"))
            x = self._ln(x + self._lin(h, p + "output.dense"), p + "output.LayerNorm")
        m = mask[:, :, None].to(x.dtype)
        pooled = (x * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return F.normalize(pooled, dim=-1)


@dataclass
class Encoder:
    model: MiniLM
    tokenizer: Tokenizer

    @classmethod
    def load(cls, weights: Path, tokenizer: Path, config: dict) -> "Encoder":
        state = dequantize(load_file(str(weights)))
        return cls(MiniLM(BertConfig.from_json(config), state).eval(), load_tokenizer(tokenizer))

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text).ids)

    @torch.inference_mode()
    def encode(self, texts: list[str]) -> torch.Tensor:
        """(len(texts), hidden) float32, unit length. One text: no padding at all."""
        encs = self.tokenizer.encode_batch(texts)
        n = max(len(e.ids) for e in encs)
        ids = torch.zeros(len(encs), n, dtype=torch.long)
        mask = torch.zeros(len(encs), n, dtype=torch.long)
        for row, e in enumerate(encs):
            ids[row, :len(e.ids)] = torch.tensor(e.ids)
            mask[row, :len(e.ids)] = 1
        return self.model(ids, mask)
