"""The model folder on disk: safetensors weights (fp16 to stay small, fp32 in
memory), config.json, tokenizer.json. Nothing is pickled."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

from demohub.kit.modelcard import read_config, write_config
from demos.questions import wordpiece
from demos.questions.features import FeatureVocab
from demos.questions.labels import COARSE_NAMES, LabelSet
from demos.questions.model import Ensemble, ModelConfig

WEIGHTS = "model.safetensors"
FEATURES = "features.json"
TOKENIZER = "tokenizer.json"
ARCHITECTURE = "wordpiece-cnn-plus-lexical-features-ensemble"
#: The same, the convolutions reading frozen token vectors taken from MiniLM (see train.py).
PRETRAINED_ARCHITECTURE = "minilm-token-vectors-cnn-plus-lexical-features-ensemble"


@dataclass
class Loaded:
    model: Ensemble
    tokenizer: Tokenizer
    features: FeatureVocab
    labels: LabelSet
    config: dict

    @property
    def max_len(self) -> int:
        return self.model.cfg.max_len

    @property
    def coarse_weight(self) -> float:
        """How much the coarse head counts against the folded fine head."""
        return float(self.config.get("coarse_head_weight", 0.5))


def save(out: str | Path, model: Ensemble, tokenizer: Tokenizer, features: FeatureVocab, labels: LabelSet,
         extra: dict) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: (v.half() if v.is_floating_point() else v).detach().contiguous()
             for k, v in model.state_dict().items()}
    save_file(state, str(out / WEIGHTS), metadata={"format": "pt"})
    tokenizer.save(str(out / TOKENIZER))
    (out / FEATURES).write_text(json.dumps(features.names, ensure_ascii=False) + "\n", encoding="utf-8")
    write_config(out, {
        "framework": "pytorch",
        "architecture": PRETRAINED_ARCHITECTURE if model.cfg.pretrained_dim else ARCHITECTURE,
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
    model = Ensemble(cfg)
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path / WEIGHTS)).items()}
    model.load_state_dict(state)
    model.eval()
    labels = LabelSet(coarse=tuple(config["coarse_labels"]), fine=tuple(config["fine_labels"]))
    features = FeatureVocab(json.loads((path / FEATURES).read_text(encoding="utf-8")))
    return Loaded(model=model, tokenizer=wordpiece.load(path / TOKENIZER), features=features,
                  labels=labels, config=config)
