"""Keyword search with BM25 (bm25s, Snowball stemmer, English stop words): the
baseline column beside the semantic one. Its arrays are saved in the model
folder and memory-mapped, like the vector index."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import bm25s
import numpy as np
import Stemmer

STOPWORDS = "en"
#: tuned on the GCIDE dev split by demos/search/evaluate.py (bm25s' own defaults are 1.5 and 0.75)
DEFAULT_K1, DEFAULT_B = 1.2, 0.5


def _stemmer():
    return Stemmer.Stemmer("english")


def tokens(texts: list[str], stemmer) -> list[list[str]]:
    return bm25s.tokenize(texts, stopwords=STOPWORDS, stemmer=stemmer, return_ids=False, show_progress=False)


def corpus_tokens(texts: list[str]) -> list[list[str]]:
    return tokens(texts, _stemmer())


def build(texts: list[str], k1: float = DEFAULT_K1, b: float = DEFAULT_B,
          tokenized: list[list[str]] | None = None) -> bm25s.BM25:
    """`tokenized`: the texts already through `corpus_tokens` (tuning k1 and b tokenizes once)."""
    retriever = bm25s.BM25(k1=k1, b=b)
    retriever.index(tokenized if tokenized is not None else corpus_tokens(texts), show_progress=False)
    return retriever


@dataclass
class Keyword:
    retriever: bm25s.BM25
    stemmer: object
    n: int
    masks: dict[tuple[int, int], np.ndarray]

    @classmethod
    def open(cls, folder: Path, n: int) -> "Keyword":
        return cls.wrap(bm25s.BM25.load(str(folder), mmap=True, show_progress=False), n)

    @classmethod
    def wrap(cls, retriever: bm25s.BM25, n: int) -> "Keyword":
        return cls(retriever, _stemmer(), n, {})

    def _mask(self, rows: tuple[int, int]) -> np.ndarray:
        if rows not in self.masks:
            mask = np.zeros(self.n, dtype=np.float32)
            mask[rows[0]:rows[1]] = 1
            self.masks[rows] = mask
        return self.masks[rows]

    def search(self, text: str, k: int, rows: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, rows) best first; only rows with a positive score (a word in common)."""
        known = [t for t in tokens([text], self.stemmer)[0] if t in self.retriever.vocab_dict]
        if not known:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        # The scores of every passage at once (a sum of the query terms' columns of the
        # stored matrix), then the top k: 0.7 ms over WordNet, where bm25s' `retrieve`
        # for a single query took 16 ms of its own bookkeeping. Ties: lower row first.
        scores = self.retriever.get_scores(known)
        if rows:
            scores = scores * self._mask(rows)
        k = min(k, self.n)
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.lexsort((top, -scores[top]))]
        keep = scores[top] > 0
        return scores[top][keep].astype(np.float32), top[keep].astype(np.int64)
