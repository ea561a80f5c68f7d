"""The model folder on disk: safetensors weights (int8 + fp16, see `quant.py`;
fp32 in memory), config.json, tokenizer.json. Nothing is pickled."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

from demohub.kit.modelcard import read_config, write_config
from demos.questions import wordpiece
from demos.questions.labels import COARSE_NAMES, LabelSet
from demos.questions.model import Encoder, ModelConfig
from demos.questions.quant import dequantize, quantize

WEIGHTS = "model.safetensors"
TOKENIZER = "tokenizer.json"
ARCHITECTURE = "wordpiece-transformer-encoder-two-heads"


@dataclass
class Loaded:
    model: Encoder
    tokenizer: Tokenizer
    labels: LabelSet
    config: dict

    @property
    def max_len(self) -> int:
        return self.model.cfg.max_len

    @property
    def coarse_weight(self) -> float:
        """How much the coarse head counts against the folded fine head."""
        return float(self.config.get("coarse_head_weight", 0.5))


def save(out: str | Path, model: Encoder, tokenizer: Tokenizer, labels: LabelSet, extra: dict) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file(quantize(model.state_dict()), str(out / WEIGHTS), metadata={"format": "pt", "quantized": "int8-rows"})
    tokenizer.save(str(out / TOKENIZER))
    write_config(out, {
        "framework": "pytorch",
        "architecture": ARCHITECTURE,
        "model": model.cfg.to_json(),
        "coarse_labels": list(labels.coarse),
        "fine_labels": list(labels.fine),
        "coarse_names": {c: COARSE_NAMES.get(c, c) for c in labels.coarse},
        "max_len": model.cfg.max_len,
        **extra,
    })
    return out


def load(path: str | Path) -> Loaded:
    path = Path(path)
    config = read_config(path)
    cfg = ModelConfig.from_json(config["model"])
    model = Encoder(cfg)
    model.load_state_dict(dequantize(load_file(str(path / WEIGHTS))))
    model.eval()
    labels = LabelSet(coarse=tuple(config["coarse_labels"]), fine=tuple(config["fine_labels"]))
    return Loaded(model=model, tokenizer=wordpiece.load(path / TOKENIZER), labels=labels, config=config)
