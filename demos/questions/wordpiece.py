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


def trim(pieces: list[str], counts: dict[str, int], size: int) -> list[str]:
    """The `size` pieces a smaller vocabulary keeps, in their original order:
    the special tokens and every single character (with and without "##"),
    so any word still tokenizes, then the pieces used most in `counts` (ties:
    the original order, which is the vocabulary's own frequency order)."""
    must = {p for p in pieces if (p.startswith("[") and p.endswith("]")) or len(p.removeprefix("##")) == 1}
    if size < len(must):
        raise ValueError(f"a vocabulary of {size} cannot hold its {len(must)} special and single-character pieces")
    rank = {p: i for i, p in enumerate(pieces)}
    rest = sorted((p for p in pieces if p not in must), key=lambda p: (-counts.get(p, 0), rank[p]))
    kept = must | set(rest[: size - len(must)])
    return [p for p in pieces if p in kept]


def pieces(tokenizer: Tokenizer) -> list[str]:
    """The tokenizer's vocabulary in id order."""
    return [t for t, _ in sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])]


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
