"""Runs only inside the questions worker: loads the folder, answers requests.

A request is {"text": "..."} for one question or {"texts": [...]} for a batch
(one forward pass); `predict_batch` answers several visitors' requests in one
forward pass when the hub coalesces them. Results are plain dicts so they cross the process
boundary without torch.
"""

from __future__ import annotations

from pathlib import Path

import torch

from demohub.errors import InputError
from demos.questions import folder
from demos.questions.classify import score
from demos.questions.labels import argmax, top
from demos.questions.text import prepare, truncation_notice

#: Most questions one request may carry.
MAX_BATCH = 256
#: Below this top fine probability the answer is flagged as unsure: more likely wrong than right.
#: The probabilities are close to calibrated (fine ECE ~0.035 over cross-validation folds), and
#: the flag holds up: on folds 0-1 it marks ~11 % of answers, right 38-47 % of the time against
#: 91-93 % for the rest (python -m demos.questions.cv; docs/benchmarks.md, issue 30).
UNSURE_BELOW = 0.5


def load(model_dir: str | Path) -> folder.Loaded:
    return folder.load(model_dir)


def predict(model: folder.Loaded, request: dict) -> dict | list[dict]:
    if not isinstance(request, dict) or not ({"text", "texts"} & request.keys()):
        raise InputError('Send {"text": "a question"} or {"texts": ["...", "..."]}.')
    if "texts" in request:
        texts = request["texts"]
        if not isinstance(texts, (list, tuple)) or not texts:
            raise InputError("`texts` must be a non-empty list of questions.")
        if len(texts) > MAX_BATCH:
            raise InputError(f"At most {MAX_BATCH} questions per request (got {len(texts)}).")
        return answer(model, list(texts))
    return answer(model, [request["text"]])[0]


def predict_batch(model: folder.Loaded, requests: list) -> list:
    """Concurrent visitors' questions (the hub coalesces them) in one forward pass.
    If one is bad this raises, and the hub retries them one by one so only that
    visitor gets the error."""
    if all(isinstance(r, dict) and "text" in r and "texts" not in r for r in requests):
        return answer(model, [r["text"] for r in requests])
    return [predict(model, r) for r in requests]


def answer(model: folder.Loaded, texts: list) -> list[dict]:
    prepared = [prepare(t, model.max_len) for t in texts]
    scores = score(model, [p.text for p in prepared])
    labels, names = model.labels, model.config.get("coarse_names", {})
    out = []
    for p, s in zip(prepared, scores):
        coarse = labels.coarse[argmax(s.coarse)]
        fine = labels.fine[argmax(s.fine)]
        truncated = p.clipped or s.truncated
        confidence = max(s.fine)
        out.append({
            "coarse": top(s.coarse, labels.coarse),
            "fine": top(s.fine, labels.fine, k=10),
            "coarse_label": coarse,
            "coarse_name": names.get(coarse, coarse),
            "fine_label": fine,
            "confidence": round(confidence, 4),
            "unsure": confidence < UNSURE_BELOW,
            "truncated": truncated,
            "notice": truncation_notice(model.max_len) if truncated else None,
            "trained": bool(model.config.get("trained", False)),
        })
    return out


def placeholder(model_dir: Path) -> None:
    """An untrained, tiny folder so the tab works before any training."""
    from demos.questions import wordpiece
    from demos.questions.labels import COARSE_NAMES, LabelSet
    from demos.questions.model import Encoder, ModelConfig
    from demos.questions.train import DEFAULT_VOCAB

    torch.manual_seed(0)
    tokenizer = wordpiece.build(DEFAULT_VOCAB)
    fine = ("ABBR:exp", "DESC:def", "ENTY:other", "HUM:ind", "LOC:other", "NUM:count")
    labels = LabelSet(coarse=tuple(sorted(COARSE_NAMES)), fine=fine)
    cfg = ModelConfig(vocab_size=tokenizer.get_vocab_size(), n_coarse=6, n_fine=len(fine),
                      dim=16, heads=2, inner=32, layers=1)
    folder.save(model_dir, Encoder(cfg), tokenizer, labels, {"trained": False})
