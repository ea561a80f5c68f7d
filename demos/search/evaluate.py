"""How well the search finds a word from its description: `python -m demos.search.evaluate`.

The queries are Webster 1913 definitions (GCIDE, Debian's dict-gcide, GPL-2+:
read at evaluation time, never committed) of words WordNet also has; a query's
right answers are the WordNet synsets holding that word (a reverse dictionary).
Definitions GCIDE took from WordNet are dropped (they would be the answer's own
gloss), and so are definitions that contain the word or its stem. One
definition per word, words sampled with a fixed seed; a dev split tunes BM25's
k1 and b, the test split gives the table.

    python -m demos.search.evaluate --model models/search            # the table
    python -m demos.search.evaluate --model models/search --card models/search/README.md

Rows: BM25 (bm25s, Snowball stemmer, English stop words, tuned), the full
encoder (fp32 MiniLM, exact fp32 inner product), the levers the shipped folder
pulls (int8 encoder, SQ8/SQ4 index) one at a time, and exactly what the demo
ships (its folder through runtime.search)."""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

GCIDE = Path("/usr/share/dictd")
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_SOURCE = re.compile(r"\[(1913 Webster|Webster 1913 Suppl\.)\]")
K = 10


@dataclass(frozen=True)
class Case:
    word: str
    query: str
    answers: frozenset[int]   # rows of the passages that hold the word


def _b64(s: str) -> int:
    n = 0
    for c in s:
        n = n * 64 + _B64.index(c)
    return n


def clean_definition(paragraph: str) -> str:
    """One GCIDE sense paragraph -> plain text: sense number, field labels, source tags,
    braces, citations and trailing examples ("; as, ...") removed."""
    text = re.sub(r"\[[^\]]*\]", " ", " ".join(paragraph.split())).strip()
    text = re.sub(r"^\d+\.\s*", "", text)
    text = re.sub(r"^(\([^)]{1,30}\)\s*|Fig\.:\s*|Hence,\s*)+", "", text)
    text = re.sub(r"[{}]", "", text)
    text = re.split(r";\s*as,|--|\s\"", text)[0]
    return " ".join(text.split()).strip(" ;,:.")


def senses(entry: str) -> list[str]:
    """The Webster 1913 definitions of one GCIDE entry (not its quotations, phrases or WordNet copies)."""
    out = []
    for n, para in enumerate(entry.strip("\n").split("\n\n")):
        if "[WordNet" in para or "Syn:" in para or not _SOURCE.search(para):
            continue
        lines = para.split("\n")
        if n == 0:  # the headword line(s): skip them and the etymology in brackets
            depth, body = 0, []
            for i, line in enumerate(lines):
                depth += line.count("[") - line.count("]")
                if depth <= 0 and i + 1 < len(lines):
                    body = lines[i + 1:]
                    break
            lines = body
        if not lines or lines[0].startswith(" " * 7) or lines[0].lstrip().startswith("{"):
            continue  # a quotation or a phrase ({Cold chisel})
        definition = clean_definition("\n".join(lines))
        if not re.match(r"(Note:|imp\.|p\. p\.|pl\. of|See )", definition):
            out.append(definition)
    return out


def _common(a: str, b: str) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def contains_word(definition: str, word: str) -> bool:
    """The word or a form of it appears: a token sharing all but its last 3 letters
    (at least 3), or a token of 5+ letters the word starts with (compassionate-ness)."""
    tokens = re.findall(r"[a-z]+", definition.lower())
    for part in re.findall(r"[a-z]+", word.lower()):
        need = min(len(part), max(3, len(part) - 3))
        if any(len(t) >= 3 and _common(t, part) >= need or (len(t) >= 5 and part.startswith(t)) for t in tokens):
            return True
    return False


def read_gcide(folder: Path = GCIDE) -> dict[str, list[str]]:
    """{lowercased headword: [definitions]} from dict-gcide's index and dictzip file."""
    if not (folder / "gcide.index").exists():
        raise FileNotFoundError(f"GCIDE is not in {folder}: install Debian's dict-gcide "
                                "(scripts/setup.sh --test does)")
    data = gzip.open(folder / "gcide.dict.dz").read()
    out: dict[str, list[str]] = {}
    seen: set[tuple[str, int]] = set()
    with open(folder / "gcide.index", encoding="utf-8") as f:
        for line in f:
            word, off, size = line.rstrip("\n").split("\t")
            key = (word.lower(), _b64(off))
            if word.startswith("00-") or key in seen:
                continue
            seen.add(key)
            entry = data[key[1]:key[1] + _b64(size)].decode("utf-8", "replace")
            if entry.lstrip().split("\\", 1)[0].strip().lower() != key[0]:
                continue  # the key is a phrase or an inflection inside another word's entry
            out.setdefault(key[0], []).extend(senses(entry))
    return out


def make_cases(passages, gcide: dict[str, list[str]], n: int, seed: int) -> list[Case]:
    holders: dict[str, set[int]] = {}
    for row, p in enumerate(passages):
        for w in p.words:
            holders.setdefault(w.lower(), set()).add(row)
    candidates = []
    for word in sorted(set(gcide) & set(holders)):
        good = [d for d in gcide[word] if 12 <= len(d) <= 250 and len(d.split()) >= 3 and not contains_word(d, word)]
        if good:
            candidates.append((word, good))
    rng = random.Random(seed)
    rng.shuffle(candidates)
    return [Case(w, rng.choice(defs), frozenset(holders[w])) for w, defs in candidates[:n]]


def score(ranked: list[list[int]], cases: list[Case]) -> dict[str, float]:
    rr, r1, r10 = [], [], []
    for rows, case in zip(ranked, cases):
        first = next((i for i, r in enumerate(rows[:K]) if r in case.answers), None)
        rr.append(0.0 if first is None else 1.0 / (first + 1))
        r1.append(first == 0)
        r10.append(first is not None)
    return {"MRR@10": float(np.mean(rr)), "R@1": float(np.mean(r1)), "R@10": float(np.mean(r10))}


def run_bm25(passages, cases, k1, b, tokenized=None):
    from demos.search import keyword

    retriever = keyword.build([p.text for p in passages], k1, b, tokenized)
    kw = keyword.Keyword.wrap(retriever, len(passages))
    return [list(kw.search(c.query, K)[1]) for c in cases]


def run_vectors(index, vectors_of_queries) -> list[list[int]]:
    _, ids = index.search(np.ascontiguousarray(vectors_of_queries, dtype=np.float32), K)
    return [list(r) for r in ids]


def table(rows: list[tuple[str, dict[str, float]]], n: int, note: str) -> str:
    lines = [f"Reverse dictionary, {n:,} GCIDE (Webster 1913) definitions -> WordNet 3.0 synsets holding the "
             f"word, test split. {note}", "",
             "| system | MRR@10 | R@1 | R@10 |", "| --- | --- | --- | --- |"]
    lines += [f"| {name} | {m['MRR@10']:.3f} | {m['R@1']:.3f} | {m['R@10']:.3f} |" for name, m in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    import torch

    from demos.search import build as B
    from demos.search import folder as F
    from demos.search import index as vindex
    from demos.search import runtime
    from demos.search.encoder import Encoder
    from demos.search.query import Query

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=B.ROOT / "models" / "search")
    ap.add_argument("--gcide", type=Path, default=GCIDE)
    ap.add_argument("--queries", type=int, default=1500, help="dev + test queries (a third is dev)")
    ap.add_argument("--seed", type=int, default=27)
    ap.add_argument("--cache", type=Path, default=B.ROOT / ".cache" / "search-build")
    ap.add_argument("--card", type=Path, help="a model card whose evaluation section gets the table")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    started = time.monotonic()

    stored = F.Passages.open(args.model)
    passages = [stored[i] for i in range(len(stored))]
    cases = make_cases(passages, read_gcide(args.gcide), args.queries, args.seed)
    dev, test = cases[:len(cases) // 3], cases[len(cases) // 3:]
    log(f"{len(cases)} queries ({len(dev)} dev, {len(test)} test), e.g. {test[0].word!r}: {test[0].query!r}")

    from demos.search import keyword

    tokenized = keyword.corpus_tokens([p.text for p in passages])
    best = max(((k1, b) for k1 in (0.9, 1.2, 1.5, 2.0) for b in (0.5, 0.75, 0.9)),
               key=lambda kb: score(run_bm25(passages, dev, *kb, tokenized), dev)["MRR@10"])
    log(f"BM25 tuned on dev: k1={best[0]}, b={best[1]}")
    rows = [(f"BM25 (bm25s, stemmed, stop words; k1={best[0]}, b={best[1]} tuned on {len(dev)} dev queries)",
             score(run_bm25(passages, test, *best, tokenized), test))]
    shipped_cfg = json.loads((args.model / "config.json").read_text())
    default_kb = (shipped_cfg["keyword"]["k1"], shipped_cfg["keyword"]["b"])
    if default_kb != best:
        rows.append((f"BM25 as the folder ships it (k1={default_kb[0]}, b={default_kb[1]})",
                     score(run_bm25(passages, test, *default_kb, tokenized), test)))

    src = B.encoder_dir()
    enc_cfg = json.loads((src / "config.json").read_text())
    full = Encoder.load(src / "model.safetensors", src / "tokenizer.json", enc_cfg)
    vectors = B.cached_vectors(full, src, [p.text for p in passages], args.cache, log)
    q_full = np.concatenate([full.encode([c.query]).numpy() for c in test])
    shipped = runtime.load(args.model)
    q_shipped = np.concatenate([shipped.encoder.encode([c.query]).numpy() for c in test])
    dtype, kind = shipped_cfg["encoder_dtype"], shipped_cfg["index"]["kind"]
    rows.append(("MiniLM fp32, exact fp32 index (the full encoder)", score(run_vectors(vindex.build(vectors, "flat"), q_full), test)))
    rows.append((f"MiniLM {dtype} queries, exact fp32 index", score(run_vectors(vindex.build(vectors, "flat"), q_shipped), test)))
    for lever in ("sq8", "sq4"):
        rows.append((f"MiniLM fp32 queries, {lever} index", score(run_vectors(vindex.build(vectors, lever), q_full), test)))
    timings = []
    ranked = []
    for c in test:
        t = time.perf_counter()
        answer = runtime.search(shipped, Query(text=c.query, k=K), keyword=False)
        timings.append(time.perf_counter() - t)
        ranked.append([shipped.passages.row_of(r["id"]) for r in answer["results"]])
    rows.append((f"**shipped**: {args.model.name}/ ({dtype} encoder, {kind} index, runtime.search)", score(ranked, test)))
    note = (f"Seed {args.seed}; `python -m demos.search.evaluate --model {args.model}`; "
            f"shipped search {np.median(timings) * 1000:.1f} ms median per query on {args.threads} thread(s); "
            f"run took {time.monotonic() - started:.0f} s.")
    text = table(rows, len(test), note)
    print(text)
    if args.card:
        card = args.card.read_text()
        head, mark, rest = card.partition(B.CARD_MARK)
        _, mark2, tail = rest.partition(B.CARD_MARK)
        if not mark or not mark2:
            raise SystemExit(f"{args.card} has no {B.CARD_MARK} section to fill")
        args.card.write_text(head + mark + "\n" + text + "\n" + mark2 + tail)
        log(f"wrote the table into {args.card}")


if __name__ == "__main__":
    main()
