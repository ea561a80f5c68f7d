"""What a search request may be: pure checks shared by the tab (hub process, so a
bad query never needs the model) and the runtime (worker, for API callers of
the runtime itself). Each refusal is a sentence a person can act on."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from demohub.errors import InputError

MAX_CHARS = 1000
MAX_K = 50
DEFAULT_K = 10
LIKE = "like:"
#: `embed:<text>`: the encoder as an API (the vector of the text, no search)
EMBED = "embed:"
#: The part-of-speech filter's choices; "any" means no filter.
POS_CHOICES = ("any", "noun", "verb", "adj", "adv")


@dataclass(frozen=True)
class Query:
    text: str = ""          # what to encode (a description), or
    like: str | None = None  # the id of a passage whose stored vector is the query
    k: int = DEFAULT_K
    pos: str = "any"
    embed: bool = False  # return the text's vector instead of searching with it


def clean(text: str) -> str:
    """Invisible and control characters removed (they change tokens, not meaning), spaces collapsed."""
    kept = "".join(" " if unicodedata.category(c) in ("Cc", "Zs", "Zl", "Zp") else c
                   for c in text if unicodedata.category(c) not in ("Cf", "Co", "Cs", "Cn"))
    return " ".join(kept.split())


def check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, float)) or k != int(k):
        raise InputError(f"k is how many results to show: a whole number from 1 to {MAX_K}.")
    if not 1 <= int(k) <= MAX_K:
        raise InputError(f"k must be between 1 and {MAX_K} (got {int(k):,}).")
    return int(k)


def check_pos(pos) -> str:
    if pos in (None, ""):
        return "any"
    if pos not in POS_CHOICES:
        raise InputError(f"The part-of-speech filter is one of {', '.join(POS_CHOICES)} (got {str(pos)[:40]!r}).")
    return pos


def parse(text, k=DEFAULT_K, pos="any") -> Query:
    """A query box's text (a description, `like:<id>` for "more like this", or
    `embed:<text>` for the text's vector), k and the filter."""
    if text is None or (isinstance(text, str) and not text.strip()):
        raise InputError("Describe what you are looking for, e.g. \"a tool for cutting wood\" "
                         "(the query is empty).")
    if not isinstance(text, str):
        raise InputError("The query must be text, e.g. \"a tool for cutting wood\".")
    if len(text) > MAX_CHARS:
        raise InputError(f"The query is {len(text):,} characters long; keep it under {MAX_CHARS:,} "
                         "(a sentence or two describing what you look for works best).")
    k, pos = check_k(k), check_pos(pos)
    text = clean(text)
    if not text:
        raise InputError("The query has no visible characters; type a description such as "
                         "\"a tool for cutting wood\".")
    if text.lower().startswith(LIKE):
        ref = text[len(LIKE):].strip()
        if not ref:
            raise InputError("`like:` needs the id of a result, e.g. like:04157320-n.")
        return Query(like=ref, k=k, pos=pos)
    if text.lower().startswith(EMBED):
        rest = text[len(EMBED):].strip()
        if not rest:
            raise InputError("`embed:` needs the text to encode, e.g. embed:a tool for cutting wood.")
        return Query(text=rest, k=k, pos=pos, embed=True)
    return Query(text=text, k=k, pos=pos)
