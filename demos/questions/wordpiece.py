"""The WordPiece tokenizer: built once from the shared vocabulary, then saved
as `tokenizer.json` so the model folder is self-contained."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer
from tokenizers.implementations import BertWordPieceTokenizer

PAD_ID = 0
UNK_ID = 1


def build(vocab_path: str | Path) -> Tokenizer:
    """Lowercase, strip accents, split punctuation: the vocabulary's conventions."""
    wp = BertWordPieceTokenizer(str(vocab_path), lowercase=True, strip_accents=True)
    return wp._tokenizer  # the plain `Tokenizer`, serialisable to tokenizer.json


def load(path: str | Path) -> Tokenizer:
    return Tokenizer.from_file(str(path))


@dataclass(frozen=True)
class Batch:
    ids: list[list[int]]  # padded to one length, [CLS] ... [SEP]
    pieces: list[list[str]]  # the kept tokens as text, without [CLS]/[SEP]
    truncated: list[bool]


def encode(tokenizer: Tokenizer, texts: list[str], max_len: int) -> Batch:
    """Token ids for a batch, truncated to `max_len` and right-padded with PAD_ID."""
    encodings = tokenizer.encode_batch(texts)
    rows, pieces, cut = [], [], []
    for enc in encodings:
        ids, tokens = enc.ids, enc.tokens
        cut.append(len(ids) > max_len)
        if len(ids) > max_len:  # keep the final [SEP]
            ids, tokens = ids[: max_len - 1] + ids[-1:], tokens[: max_len - 1] + tokens[-1:]
        rows.append(ids)
        pieces.append(tokens[1:-1])
    width = max(len(r) for r in rows)
    return Batch(ids=[r + [PAD_ID] * (width - len(r)) for r in rows], pieces=pieces, truncated=cut)


def decode(tokenizer: Tokenizer, ids: list[int]) -> str:
    return tokenizer.decode([i for i in ids if i != PAD_ID])
