"""Grad-CAM (Selvaraju et al., 2017) for one image and one class.

The map is ReLU(sum_k w_k A_k), where A_k are the target layer's activation
maps and w_k the spatial mean of d(logit)/dA_k. Only the layers after the
target need a graph: when the network itself does not track gradients, the
hook makes the activations a leaf that does, so the backbone runs without
autograd bookkeeping.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class Explanation:
    logits: np.ndarray   # (num_classes,)
    class_index: int     # the class the map explains
    cam: np.ndarray      # 2-D, >= 0, at the target layer's resolution


def grad_cam(net: nn.Module, layer: nn.Module, x: torch.Tensor, class_index: int | None = None) -> Explanation:
    """Explain `class_index` (default: the predicted class) for a 1xCxHxW batch."""
    if x.shape[0] != 1:
        raise ValueError("grad_cam explains one image at a time")
    captured: list[torch.Tensor] = []

    def keep(_module, _inputs, output):
        if not output.requires_grad:
            output.requires_grad_(True)
        captured.append(output)

    handle = layer.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            logits = net(x)[0]
            index = int(logits.argmax()) if class_index is None else int(class_index)
            (grads,) = torch.autograd.grad(logits[index], captured[-1])
    finally:
        handle.remove()
    acts = captured[-1].detach()[0]
    weights = grads[0].mean(dim=(1, 2), keepdim=True)
    cam = torch.relu((weights * acts).sum(dim=0))
    return Explanation(logits=logits.detach().cpu().numpy().astype(np.float64), class_index=index,
                       cam=cam.cpu().numpy().astype(np.float32))
