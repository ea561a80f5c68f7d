"""The four breeds the demo tells apart, and one line on how each looks and
tastes, so the answer means something to someone who has never tasted one."""

from __future__ import annotations

import re

LABELS: tuple[str, ...] = ("D24", "Jin Feng (Golden Phoenix)", "Mao Shan Wang", "Red Prawn")

DESCRIPTIONS: dict[str, str] = {
    "D24": "Round and medium-sized with pale yellow flesh; creamy and sweet with a mild, "
           "slightly bitter finish.",
    "Jin Feng (Golden Phoenix)": "Small, roundish fruit with sharp spines and pale, watery flesh; "
                                 "pungent, strongly bitter and almost alcoholic.",
    "Mao Shan Wang": "Golden-yellow, thick custard-like flesh and a brown star at the base; "
                     "rich bittersweet taste (also called Musang King).",
    "Red Prawn": "Oval with short, wide spines and sticky orange-red flesh; very sweet with "
                 "hardly any bitterness.",
}

#: Other names the same breeds go by in folder names and shops.
ALIASES: dict[str, str] = {
    "sultan": "D24",
    "d24": "D24",
    "jinfeng": "Jin Feng (Golden Phoenix)",
    "goldenphoenix": "Jin Feng (Golden Phoenix)",
    "jinfenggoldenphoenix": "Jin Feng (Golden Phoenix)",
    "maoshanwang": "Mao Shan Wang",
    "musangking": "Mao Shan Wang",
    "msw": "Mao Shan Wang",
    "redprawn": "Red Prawn",
    "udangmerah": "Red Prawn",
}


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def canonical(name: str) -> str | None:
    """The breed a folder or label name refers to ("musang_king" -> "Mao Shan Wang")."""
    return ALIASES.get(_key(name))


def describe(label: str, descriptions: dict[str, str] | None = None) -> str:
    """The description line for `label`, from the model's config first."""
    descriptions = descriptions if descriptions is not None else DESCRIPTIONS
    if label in descriptions:
        return descriptions[label]
    breed = canonical(label)
    return DESCRIPTIONS.get(breed, "") if breed else ""
