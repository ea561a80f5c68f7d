"""Is the confidence the tab shows worth believing? Expected calibration error
and temperature scaling (Guo et al. 2017), as pure functions of logits and
gold indices. The temperature is fitted on questions the model did not train
on and never on the ones it is scored on (see `cv.py`)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def ece(probs: torch.Tensor, gold: torch.Tensor, bins: int = 15) -> float:
    """Expected calibration error: over equal-width bins of the top
    probability, the gap between mean confidence and accuracy, weighted by
    the bin's share of the questions."""
    conf, pred = probs.max(-1)
    right = pred.eq(gold).double()
    conf = conf.double()
    which = (conf * bins).ceil().clamp(1, bins).long() - 1  # (0, 1/bins] is bin 0, ..., 1.0 the last
    total = 0.0
    for b in range(bins):
        sel = which.eq(b)
        if sel.any():
            total += sel.double().mean().item() * abs(conf[sel].mean().item() - right[sel].mean().item())
    return total


def nll(logits: torch.Tensor, gold: torch.Tensor, temperature: float = 1.0) -> float:
    return F.cross_entropy(logits.double() / temperature, gold).item()


def fit_temperature(logits: torch.Tensor, gold: torch.Tensor, low: float = 0.05, high: float = 20.0) -> float:
    """The T in [low, high] minimising the NLL of softmax(logits / T): NLL is
    unimodal in log T, so a golden-section search on log T finds it."""
    a, b = math.log(low), math.log(high)
    g = (5 ** 0.5 - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = nll(logits, gold, math.exp(c)), nll(logits, gold, math.exp(d))
    for _ in range(60):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = nll(logits, gold, math.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = nll(logits, gold, math.exp(d))
    return round(math.exp((a + b) / 2), 4)


def below(probs: torch.Tensor, gold: torch.Tensor, threshold: float) -> tuple[float, float, float]:
    """(share of answers whose top probability is under `threshold`, their
    accuracy, the accuracy of the rest): what flagging them "unsure" buys.
    An empty side's accuracy is nan."""
    conf, pred = probs.max(-1)
    right = pred.eq(gold).double()
    low = conf.lt(threshold)

    def acc(sel: torch.Tensor) -> float:
        return right[sel].mean().item() if sel.any() else math.nan

    return low.double().mean().item(), acc(low), acc(~low)
