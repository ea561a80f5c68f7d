"""The search model folder (Hub layout) and what a worker holds of it.

    config.json            encoder sizes, index kind, corpus facts (pos ranges), "trained"
    model.safetensors      the MiniLM encoder (fp32/fp16/int8 rows), tokenizer.json (padding off)
    index.faiss            the passage vectors (faiss, memory-mapped read-only)
    passages.jsonl         one passage per line (+ passages.offsets.npy: byte offsets)
    ids.npy, ids_rows.npy  passage ids sorted, and their rows ("more like this" by id)
    bm25/                  the keyword index (bm25s arrays, memory-mapped)
    LICENSE-corpus.txt     the corpus's licence notice (WordNet's)
    README.md              model card with the evaluation

Everything large is mapped, not read: a second copy of the model shares the
index, the passages and the keyword arrays with the first through the page cache."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from demohub.kit.modelcard import read_config
from demos.search import index as vindex
from demos.search.corpus import Passage
from demos.search.encoder import Encoder
from demos.search.keyword import Keyword

WEIGHTS, TOKENIZER, INDEX, PASSAGES = "model.safetensors", "tokenizer.json", "index.faiss", "passages.jsonl"
OFFSETS, IDS, ID_ROWS, BM25, LICENCE = "passages.offsets.npy", "ids.npy", "ids_rows.npy", "bm25", "LICENSE-corpus.txt"
ARCHITECTURE = "minilm-l6-mean-pool + faiss + bm25"


def write_passages(out: Path, passages: list[Passage]) -> None:
    """passages.jsonl, its byte offsets, and the sorted id table."""
    offsets = [0]
    with open(out / PASSAGES, "wb") as f:
        for p in passages:
            line = (p.to_json() + "\n").encode("utf-8")
            f.write(line)
            offsets.append(offsets[-1] + len(line))
    np.save(out / OFFSETS, np.asarray(offsets, dtype=np.int64))
    ids = np.asarray([p.id.encode("utf-8") for p in passages])
    order = np.argsort(ids, kind="stable")
    if len(ids) and (ids[order][1:] == ids[order][:-1]).any():
        raise ValueError("passage ids must be unique")
    np.save(out / IDS, ids[order])
    np.save(out / ID_ROWS, order.astype(np.int64))


@dataclass
class Passages:
    """The passages file mapped, decoded a row at a time (no per-worker copy of the corpus)."""
    data: np.memmap
    offsets: np.ndarray
    ids: np.ndarray
    id_rows: np.ndarray

    @classmethod
    def open(cls, folder: Path) -> "Passages":
        return cls(np.memmap(folder / PASSAGES, dtype=np.uint8, mode="r"),
                   np.load(folder / OFFSETS, mmap_mode="r"), np.load(folder / IDS, mmap_mode="r"),
                   np.load(folder / ID_ROWS, mmap_mode="r"))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, row: int) -> Passage:
        start, end = int(self.offsets[row]), int(self.offsets[row + 1])
        return Passage.from_json(self.data[start:end].tobytes().decode("utf-8"))

    def row_of(self, pid: str) -> int | None:
        key = pid.encode("utf-8")
        if len(key) > self.ids.dtype.itemsize:
            return None
        i = int(np.searchsorted(self.ids, key))
        return int(self.id_rows[i]) if i < len(self.ids) and self.ids[i] == key else None


@dataclass
class Loaded:
    encoder: Encoder
    index: object   # faiss.Index, memory-mapped
    passages: Passages
    keyword: Keyword
    config: dict

    @property
    def pos_ranges(self) -> dict[str, tuple[int, int]]:
        return {k: tuple(v) for k, v in self.config["corpus"]["pos_ranges"].items()}


def load(path: str | Path) -> Loaded:
    path = Path(path)
    config = read_config(path)
    passages = Passages.open(path)
    index = vindex.open_mapped(path / INDEX)
    if index.ntotal != len(passages):
        raise ValueError(f"{path}: the index holds {index.ntotal} vectors for {len(passages)} passages; "
                         "rebuild the folder with python -m demos.search.build")
    return Loaded(encoder=Encoder.load(path / WEIGHTS, path / TOKENIZER, config["encoder"]),
                  index=index, passages=passages, keyword=Keyword.open(path / BM25, len(passages)),
                  config=config)


def config_json(encoder_config: dict, encoder_dtype: str, index_kind: str, dim: int, corpus: dict,
                keyword: dict, extra: dict) -> dict:
    return {"framework": "pytorch", "architecture": ARCHITECTURE, "trained": True,
            "encoder": encoder_config, "encoder_dtype": encoder_dtype,
            "index": {"kind": index_kind, "dim": dim, "metric": "inner product of unit vectors"},
            "corpus": corpus, "keyword": keyword, **extra}


