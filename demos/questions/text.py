"""Question text cleanup before tokenizing: pure functions, no model needed.

Why each step:
- TREC lines quote with ``...'' (PTB style); users type "...". Map both to one form.
- Whitespace is collapsed so "  What   is X ?" and "What is X?" tokenize alike.
- Long inputs are clipped by characters *before* tokenizing, so a 100 KB paste
  costs no more than a long question.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from demohub.errors import InputError

_SPACES = re.compile(r"\s+")
_PTB_QUOTES = re.compile(r"``|''")

#: Characters kept per token of model context: generous (WordPiece tokens of
#: English average ~4-5 characters) so clipping never cuts a question the
#: tokenizer would still have kept.
CHARS_PER_TOKEN = 20


@dataclass(frozen=True)
class Prepared:
    text: str
    clipped: bool  # characters were dropped before tokenizing


def normalize(text: str) -> str:
    text = _PTB_QUOTES.sub('"', text)
    return _SPACES.sub(" ", text).strip()


def prepare(text: object, max_tokens: int) -> Prepared:
    """Validate and clean one question; raise `InputError` a person can act on."""
    if text is None:
        raise InputError("Please type a question, e.g. “What is the capital of France?”.")
    if not isinstance(text, str):
        raise InputError(f"A question must be text, not {type(text).__name__}.")
    max_chars = max_tokens * CHARS_PER_TOKEN
    clipped = len(text) > max_chars
    text = normalize(text[:max_chars])
    if not text:
        raise InputError("The question is empty: please type a question, e.g. “Who wrote Hamlet?”.")
    return Prepared(text=text, clipped=clipped)


def truncation_notice(max_tokens: int) -> str:
    return (f"Your text was longer than the model reads ({max_tokens} word pieces); "
            "only the beginning was classified.")
