"""The vector index: faiss, memory-mapped read-only so every worker (copies,
forked workers) shares one set of pages, searched by inner product over unit
vectors (= cosine). A part-of-speech filter is a row range (passages are grouped
by part of speech, see corpus.py), which faiss applies inside the scan."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import faiss

#: index kinds the build can write (faiss's ScalarQuantizer types): bytes per dimension 4, 2, 1, 0.5
KINDS = {"flat": None, "fp16": "QT_fp16", "sq8": "QT_8bit", "sq4": "QT_4bit"}


def _faiss():
    """faiss, imported on first use, in the worker: the torch template imports this
    module for its family, and every cassava or questions worker forked from it
    would otherwise carry faiss's libraries (and its own OpenMP runtime)."""
    import faiss

    return faiss


def build(vectors: np.ndarray, kind: str) -> faiss.Index:
    faiss = _faiss()
    d = vectors.shape[1]
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
    else:
        index = faiss.IndexScalarQuantizer(d, getattr(faiss.ScalarQuantizer, KINDS[kind]),
                                           faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
    index.add(vectors)
    return index


def write(index: faiss.Index, path: Path) -> None:
    _faiss().write_index(index, str(path))


def open_mapped(path: Path) -> faiss.Index:
    """The index file mapped, not read: its pages are the page cache's, shared by every process."""
    faiss = _faiss()
    return faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY)


def set_threads(n: int) -> None:
    """faiss has its own OpenMP runtime (bundled libgomp): torch's setting does not reach it."""
    _faiss().omp_set_num_threads(max(1, n))


def search(index: faiss.Index, vector: np.ndarray, k: int,
           rows: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(scores, rows) of the k nearest passages, best first; `rows` keeps a [start, end) range.
    Rows faiss could not fill (fewer passages than k) are dropped."""
    faiss = _faiss()
    params = faiss.SearchParameters(sel=faiss.IDSelectorRange(*rows)) if rows else None
    scores, ids = index.search(np.ascontiguousarray(vector, dtype=np.float32).reshape(1, -1), k, params=params)
    keep = ids[0] >= 0
    return scores[0][keep], ids[0][keep]


def stored_vector(index: faiss.Index, row: int) -> np.ndarray:
    """A passage's vector as the index holds it (decoded): "more like this" needs no encoder."""
    return index.reconstruct(int(row))
