"""Int8 weights on disk, fp32 in memory: how a 9M-parameter encoder fits the
10 MB the repository allows for the model folder.

Every 2-D float tensor (embedding tables, linear weights) is stored as int8
with one fp16 scale per row (symmetric, round to nearest); everything else
(biases, layer norms) as fp16. Training's validation figures are measured
after this round trip, so they are the shipped model's.
"""

from __future__ import annotations

import torch

SCALE = ".scale"


def quantize(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for name, w in state.items():
        w = w.detach()
        if w.is_floating_point() and w.ndim == 2:
            scale = w.abs().amax(dim=1, keepdim=True).clamp(min=1e-8) / 127
            out[name] = torch.round(w / scale).clamp(-127, 127).to(torch.int8).contiguous()
            out[name + SCALE] = scale.half().contiguous()
        elif w.is_floating_point():
            out[name] = w.half().contiguous()
        else:
            out[name] = w.contiguous()
    return out


def dequantize(stored: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for name, w in stored.items():
        if name.endswith(SCALE):
            continue
        if name + SCALE in stored:
            out[name] = w.float() * stored[name + SCALE].float()
        else:
            out[name] = w.float() if w.is_floating_point() else w
    return out
