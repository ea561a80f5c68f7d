"""Question text checks and cleanup before tokenizing: pure functions, no model
needed, so the hub (which never loads tokenizers) refuses bad input before a
worker sees it, and the worker applies the same rules to batch requests.

Why each step:
- A question is a string; JSON numbers, lists and objects are refused, not
  stringified and classified.
- A hard length limit (`MAX_CHARS`): a question is a sentence, and a 5 MB
  paste should cost nothing but a refusal.
- Control, format (zero-width) and lone surrogate code points are dropped: they
  are invisible, and a lone surrogate (half of a broken emoji) cannot be
  encoded, so the tokenizer would fail on it. Text with nothing visible left
  (only spaces, controls or combining marks) is refused.
- TREC lines quote with ``...'' (PTB style); users type "...". Map both to one form.
- Whitespace is collapsed so "  What   is X ?" and "What is X?" tokenize alike.
- Text the model cannot read in full is clipped by characters *before*
  tokenizing and flagged, so the answer carries a truncation notice.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from demohub.errors import InputError

_SPACES = re.compile(r"\s+")
_PTB_QUOTES = re.compile(r"``|''")

#: Longest question accepted, in characters.
MAX_CHARS = 2000

#: Characters kept per token of model context: generous (WordPiece tokens of
#: English average ~4-5 characters) so clipping never cuts a question the
#: tokenizer would still have kept.
CHARS_PER_TOKEN = 20

#: Unicode categories removed: controls, format characters (zero-width space,
#: joiners, bidi marks), lone surrogates.
_INVISIBLE = {"Cc", "Cf", "Cs"}

EXAMPLE = "“Who wrote Hamlet?”"

_KINDS = {bool: "true/false", int: "a number", float: "a number", list: "a list", tuple: "a list",
          dict: "an object"}


@dataclass(frozen=True)
class Prepared:
    text: str
    clipped: bool  # characters were dropped before tokenizing


def normalize(text: str) -> str:
    text = _PTB_QUOTES.sub('"', text)
    return _SPACES.sub(" ", text).strip()


def strip_invisible(text: str) -> str:
    """Drop control, zero-width/format and lone surrogate code points (whitespace
    becomes a space first, so words stay apart)."""
    text = _SPACES.sub(" ", text)
    return "".join(c for c in text if unicodedata.category(c) not in _INVISIBLE)


def has_visible(text: str) -> bool:
    """At least one letter, digit, punctuation mark or symbol (a combining
    accent on its own, or a space, is not)."""
    return any(unicodedata.category(c)[0] in "LNPS" for c in text)


def check(value: object, max_chars: int = MAX_CHARS) -> str:
    """One question as sent by a client -> clean text, or an `InputError`
    that says what to send instead."""
    if value is None:
        raise InputError(f"Please type a question, e.g. {EXAMPLE}.")
    if not isinstance(value, str):
        kind = _KINDS.get(type(value), "not text")
        raise InputError(f"Send the question as text, e.g. {EXAMPLE} (this request sent {kind}).")
    if len(value) > max_chars:
        raise InputError(f"The question is {len(value):,} characters long; the limit is {max_chars:,}. "
                         "Send one question, e.g. " + EXAMPLE + ".")
    if not value.strip():
        raise InputError(f"The question is empty: please type a question, e.g. {EXAMPLE}.")
    text = strip_invisible(value)
    if not has_visible(text):
        raise InputError("The question has no visible text (only invisible, control or combining "
                         f"characters): please type a question, e.g. {EXAMPLE}.")
    return text


def prepare(text: object, max_tokens: int) -> Prepared:
    """Validate and clean one question; raise `InputError` a person can act on."""
    text = check(text)
    max_chars = max_tokens * CHARS_PER_TOKEN
    clipped = len(text) > max_chars
    return Prepared(text=normalize(text[:max_chars]), clipped=clipped)


def truncation_notice(max_tokens: int) -> str:
    return (f"Your text was longer than the model reads ({max_tokens} word pieces); "
            "only the beginning was classified.")
