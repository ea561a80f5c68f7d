"""Runs only inside the search worker: opens the model folder (index, passages and
keyword arrays memory-mapped), answers searches.

A request is {"query": "a tool for cutting wood" | "like:<id>" | "embed:<text>", "k": 10,
"pos": "any"|"noun"|..., "keyword": true}. The answer is plain data: the semantic results in
rank order (each {"id", "words", "pos", "gloss", "score", "topic"}), the keyword (BM25)
results for the same query when asked, and where the time went; for `embed:` the text's
unit vector from the encoder instead of results (the encoder served as an API, as the
app this demo grew from did)."""

from __future__ import annotations

import time
from pathlib import Path


from demohub.errors import InputError
from demos.search import folder
from demos.search import index as vindex
from demos.search.query import Query, parse

#: faiss scans one query's codes on one thread: ~4 ms for 117k SQ8 vectors, and a
#: second OpenMP pool (faiss bundles its own libgomp) would fight torch's for the cores.
FAISS_THREADS = 1


def load(model_dir: str | Path) -> folder.Loaded:
    vindex.set_threads(FAISS_THREADS)
    model = folder.load(model_dir)
    model.encoder.encode(["warm up"])  # the first call pays ~0.3 s of one-time setup; not a visitor
    return model


def result(model: folder.Loaded, row: int, score: float) -> dict:
    p = model.passages[int(row)]
    return {"id": p.id, "words": list(p.words), "pos": p.pos, "gloss": p.text, "score": round(float(score), 4),
            "topic": p.topic}


def rows_for(model: folder.Loaded, pos: str) -> tuple[int, int] | None:
    if pos == "any":
        return None
    ranges = model.pos_ranges
    if pos not in ranges:
        have = ", ".join(sorted(ranges)) or "none: its passages have no part of speech"
        raise InputError(f"This index has no {pos} passages; choose 'any' (parts of speech here: {have}).")
    return ranges[pos]


def predict(model: folder.Loaded, request: dict) -> dict:
    if not isinstance(request, dict) or "query" not in request:
        raise InputError('Send {"query": "a tool for cutting wood", "k": 10, "pos": "any"}.')
    q = parse(request["query"], request.get("k", 10), request.get("pos", "any"))
    if q.embed:
        return embed(model, q.text)
    return search(model, q, keyword=bool(request.get("keyword", True)))


def embed(model: folder.Loaded, text: str) -> dict:
    """The text's unit vector, as the index's vectors are made (mean pooling, L2 norm)."""
    started = time.perf_counter()
    vector = model.encoder.encode([text])[0].numpy()
    ms = round((time.perf_counter() - started) * 1000, 2)
    return {
        "results": [], "keyword": None, "like": None,
        "embedding": {"text": text, "dim": int(vector.shape[0]), "encoder": model.config.get("encoder_source", ""),
                      "vector": [round(float(x), 6) for x in vector]},
        "ms": {"encode": ms, "vector_search": 0.0, "keyword": 0.0, "total": ms},
        "corpus": model.config["corpus"]["name"],
        "trained": True,
    }


def search(model: folder.Loaded, q: Query, keyword: bool = True) -> dict:
    rows = rows_for(model, q.pos)
    started = time.perf_counter()
    skip = None
    if q.like is not None:
        skip = model.passages.row_of(q.like)
        if skip is None:
            raise InputError(f"No passage has the id {q.like[:60]!r}. Use the id of a result "
                             f"(e.g. like:{model.passages[0].id}).")
        vector, text = vindex.stored_vector(model.index, skip), model.passages[skip].text
    else:
        text = q.text
        vector = model.encoder.encode([text])[0].numpy()
    encoded = time.perf_counter()
    extra = 1 if skip is not None else 0  # the passage itself comes back first: drop it
    scores, found = vindex.search(model.index, vector, q.k + extra, rows)
    semantic = [result(model, r, s) for s, r in zip(scores, found) if r != skip][:q.k]
    searched = time.perf_counter()
    keyword_results = None
    if keyword:
        kscores, kfound = model.keyword.search(text, q.k + extra, rows)
        keyword_results = [result(model, r, s) for s, r in zip(kscores, kfound) if r != skip][:q.k]
    done = time.perf_counter()
    return {
        "results": semantic,
        "keyword": keyword_results,
        "like": q.like,
        "ms": {"encode": round((encoded - started) * 1000, 2), "vector_search": round((searched - encoded) * 1000, 2),
               "keyword": round((done - searched) * 1000, 2), "total": round((done - started) * 1000, 2)},
        "corpus": model.config["corpus"]["name"],
        "trained": True,
    }


