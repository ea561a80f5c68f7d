"""Questions in, probabilities out: the one code path shared by the runtime,
the evaluator and training's validation."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from demos.questions import wordpiece
from demos.questions.folder import Loaded
from demos.questions.labels import fold_fine, mix


@dataclass(frozen=True)
class Scores:
    coarse: list[float]  # final coarse distribution (head mixed with folded fine)
    fine: list[float]
    truncated: bool


def pad(rows: list[list[int]]) -> torch.Tensor:
    """Right-pad id lists with 0 into one tensor."""
    width = max(1, max(len(r) for r in rows))
    return torch.tensor([r + [0] * (width - len(r)) for r in rows], dtype=torch.long)


@torch.inference_mode()
def score(loaded: Loaded, texts: list[str]) -> list[Scores]:
    """One forward pass for the whole batch."""
    batch = wordpiece.encode(loaded.tokenizer, texts, loaded.max_len)
    coarse, fine = loaded.model.probabilities(torch.tensor(batch.ids, dtype=torch.long))
    out = []
    for c, f, cut in zip(coarse.tolist(), fine.tolist(), batch.truncated):
        folded = fold_fine(f, loaded.labels)
        out.append(Scores(coarse=mix(c, folded, loaded.coarse_weight), fine=f, truncated=cut))
    return out
