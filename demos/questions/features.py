"""Sparse lexical features of a question, from its WordPiece tokens.

Answer types hinge on a few words in known places: the wh-word, the words
right after it ("how *many*", "what *year*"), and the head noun it asks about
("what is the *capital* of..."). A convolution can learn these from 5.5k
questions only approximately; spelling them out as features is cheap and
robust. Pure Python: tested without a model.
"""

from __future__ import annotations

WH_WORDS = ("what", "which", "who", "whom", "whose", "where", "when", "why", "how", "name")
#: Words skipped between the wh-word and the head noun.
SKIP = frozenset("""is are was were be been the a an does do did 's of can could would will
shall should has have had may might must there this that these those one ones kind kinds type
types sort sorts name names called term famous popular common best most first two".
""".split()) | frozenset("? , \" ' .".split())


def words_of(pieces: list[str]) -> list[str]:
    """Merge WordPiece continuation pieces ("##ing") back into words."""
    words: list[str] = []
    for p in pieces:
        if p.startswith("##") and words:
            words[-1] += p[2:]
        else:
            words.append(p)
    return words


def head_word(words: list[str]) -> tuple[str, str, str]:
    """(wh-word, head word, word after head), "" when absent: a parser-free
    guess at what the question asks about."""
    wh_at = next((i for i, w in enumerate(words) if w in WH_WORDS), -1)
    wh = words[wh_at] if wh_at >= 0 else ""
    rest = words[wh_at + 1 :]
    for i, w in enumerate(rest):
        if w not in SKIP:
            return wh, w, rest[i + 1] if i + 1 < len(rest) else ""
    return wh, "", ""


def features(pieces: list[str]) -> list[str]:
    """Feature strings for one question's WordPiece tokens (no [CLS]/[SEP])."""
    w = words_of(pieces)
    out = ["bias"]
    out += [f"u:{x}" for x in w]
    out += [f"p:{x}" for x in pieces if x.startswith("##")]
    out += [f"b:{a} {b}" for a, b in zip(w, w[1:])]
    out += [f"t:{a} {b} {c}" for a, b, c in zip(w, w[1:], w[2:])]
    first = (w + ["", "", ""])[:3]
    out += [f"f0:{first[0]}", f"f1:{first[1]}", f"f01:{first[0]} {first[1]}",
            f"f012:{first[0]} {first[1]} {first[2]}"]
    wh, head, after = head_word(w)
    out += [f"wh:{wh}", f"h:{head}", f"whh:{wh} {head}", f"hh:{head} {after}"]
    last = [x for x in w if x not in ("?", ".", "\"")]
    out += [f"l:{last[-1] if last else ''}", f"len:{min(len(w) // 4, 6)}"]
    return out


class FeatureVocab:
    """Feature string -> id. Id 0 pads, id 1 is the always-present bias;
    features never seen (or too rare) in training are dropped."""

    def __init__(self, names: list[str]):
        self.names = list(names)
        self.index = {name: i + 1 for i, name in enumerate(self.names)}

    @classmethod
    def build(cls, feature_lists: list[list[str]], min_count: int = 2) -> "FeatureVocab":
        counts: dict[str, int] = {}
        for feats in feature_lists:
            for f in set(feats):
                counts[f] = counts.get(f, 0) + 1
        kept = sorted(f for f, n in counts.items() if n >= min_count and f != "bias")
        return cls(["bias", *kept])

    def __len__(self) -> int:
        return len(self.names) + 1

    def ids(self, feats: list[str]) -> list[int]:
        return [self.index[f] for f in feats if f in self.index]
