"""The passages a search index holds, read from WordNet's data files or from any
JSONL corpus. Pure Python (no torch, no faiss): the hub, the build and the tests
all read it.

A passage is one WordNet synset (its words, part of speech, lexicographer file
and gloss) or one JSONL record `{"id", "text", ...}` (optional "title"/"words",
"pos"). Passages are kept grouped by part of speech, so a part-of-speech filter
is one contiguous range of rows (`pos_ranges`)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Iterator

WORDNET_DIR = Path("/usr/share/wordnet")
#: WordNet's data files in the order their rows are kept.
WORDNET_FILES = (("noun", "data.noun"), ("verb", "data.verb"), ("adj", "data.adj"), ("adv", "data.adv"))
POS_ORDER = ("noun", "verb", "adj", "adv")
_SS_TYPE = {"n": "noun", "v": "verb", "a": "adj", "s": "adj", "r": "adv"}
#: WordNet 3.0's lexicographer files, by number (lexnames(5WN)).
LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body "
    "noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location "
    "noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process "
    "noun.quantity noun.relation noun.shape noun.state noun.substance noun.time verb.body verb.change "
    "verb.cognition verb.communication verb.competition verb.consumption verb.contact verb.creation "
    "verb.emotion verb.motion verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
).split()


@dataclass(frozen=True)
class Passage:
    id: str
    words: tuple[str, ...]
    pos: str          # "noun", "verb", "adj", "adv", or "" when the corpus has none
    text: str         # what is encoded and indexed (a WordNet gloss)
    topic: str = ""   # WordNet's lexicographer file, e.g. "noun.artifact"

    def to_json(self) -> str:
        d = asdict(self)
        d["words"] = list(self.words)
        return json.dumps(d, ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str) -> "Passage":
        d = json.loads(line)
        return cls(id=d["id"], words=tuple(d["words"]), pos=d["pos"], text=d["text"], topic=d.get("topic", ""))


def _clean_word(word: str) -> str:
    """`eat_up` -> `eat up`; adjectives' syntactic markers `(a)`, `(p)`, `(ip)` dropped."""
    if word.endswith(")") and "(" in word:
        word = word[:word.rindex("(")]
    return word.replace("_", " ")


def parse_wordnet_line(line: str) -> Passage | None:
    """One line of a WordNet `data.*` file (wndb(5WN)); None for the licence header."""
    if line.startswith("  ") or not line.strip():
        return None
    head, _, gloss = line.partition(" | ")
    fields = head.split()
    offset, lexfile, ss_type, w_cnt = fields[0], int(fields[1]), fields[2], int(fields[3], 16)
    words = tuple(dict.fromkeys(_clean_word(fields[4 + 2 * i]) for i in range(w_cnt)))
    return Passage(id=f"{offset}-{ss_type if ss_type != 's' else 'a'}", words=words, pos=_SS_TYPE[ss_type],
                   text=gloss.strip(), topic=LEXNAMES[lexfile] if lexfile < len(LEXNAMES) else "")


def wordnet_licence(folder: Path = WORDNET_DIR) -> str:
    """The licence notice at the top of every WordNet data file (it must travel with the text)."""
    lines = []
    with open(folder / "data.noun", encoding="utf-8") as f:
        for line in f:
            if not line.startswith("  "):
                break
            lines.append(line[2:].split(" ", 1)[-1].rstrip() if line[2:3].isdigit() else line.strip())
    return "\n".join(lines).strip() + "\n"


def read_wordnet(folder: Path = WORDNET_DIR, limit_per_pos: int | None = None) -> list[Passage]:
    """Every synset of WordNet (117,659 in 3.0), nouns first; `limit_per_pos` keeps
    the first N of each part of speech (small test indexes)."""
    if not (folder / "data.noun").exists():
        raise FileNotFoundError(f"WordNet's data files are not in {folder}: install Debian's wordnet-base "
                                "(scripts/setup.sh --test does), or pass --jsonl with your own corpus.")
    out: list[Passage] = []
    for _pos, name in WORDNET_FILES:
        n = 0
        with open(folder / name, encoding="utf-8") as f:
            for line in f:
                p = parse_wordnet_line(line)
                if p is None:
                    continue
                out.append(p)
                n += 1
                if limit_per_pos and n >= limit_per_pos:
                    break
    return out


def read_jsonl(path: Path) -> list[Passage]:
    """Any corpus as JSONL: `{"id", "text"}` per line, optional "title" or "words", "pos"."""
    out, seen = [], set()
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{n}: not JSON ({exc.msg})") from None
            if not isinstance(d, dict) or not isinstance(d.get("text"), str) or not d["text"].strip() \
                    or "id" not in d:
                raise ValueError(f'{path}:{n}: each line needs {{"id": ..., "text": "..."}}')
            pid = str(d["id"])
            if pid in seen:
                raise ValueError(f"{path}:{n}: id {pid!r} appears twice")
            seen.add(pid)
            words = d.get("words") or ([d["title"]] if d.get("title") else [pid])
            pos = d.get("pos") or ""
            out.append(Passage(id=pid, words=tuple(str(w) for w in words), pos=str(pos), text=d["text"].strip()))
    return grouped(out)


def grouped(passages: Iterable[Passage]) -> list[Passage]:
    """Passages grouped by part of speech (WordNet's order first; stable within a group)."""
    rank = {p: i for i, p in enumerate(POS_ORDER)}
    return sorted(passages, key=lambda p: (rank.get(p.pos, len(rank)), p.pos))


def pos_ranges(passages: list[Passage]) -> dict[str, tuple[int, int]]:
    """{pos: (first row, end row)} for grouped passages; raises if a pos is split."""
    ranges: dict[str, tuple[int, int]] = {}
    for row, p in enumerate(passages):
        if not p.pos:
            continue
        start, end = ranges.get(p.pos, (row, row))
        if end != row:
            raise ValueError(f"passages of pos {p.pos!r} are not contiguous (row {row})")
        ranges[p.pos] = (start, row + 1)
    return ranges


def write_passages(path: Path, passages: list[Passage]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for p in passages:
            f.write(p.to_json() + "\n")


def iter_passages(path: Path) -> Iterator[Passage]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            yield Passage.from_json(line)
