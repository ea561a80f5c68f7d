"""Questions demo without a hub: pure text/label/feature functions, the
tokenizer, a tiny training run, and the runtime on the saved folder."""

from __future__ import annotations

import pytest

from demohub.errors import InputError
from demos.questions import features as feat
from demos.questions import labels as L
from demos.questions import text
from support import PROJECT_ROOT, SHARED_DATA

TREC = SHARED_DATA / "trec" / "train_5500.label"
VOCAB = SHARED_DATA / "questions" / "wordpiece-vocab-10k.txt"
MODEL = PROJECT_ROOT / "models" / "questions"


# ---------------------------------------------------------------- pure functions

def test_parse_line_and_read_file():
    e = L.parse_line("NUM:date When did the Berlin Wall fall ?\n")
    assert (e.fine, e.coarse, e.text) == ("NUM:date", "NUM", "When did the Berlin Wall fall ?")
    with pytest.raises(ValueError):
        L.parse_line("no label here")
    examples = L.read_examples(TREC)
    assert len(examples) == 5452
    labels = L.LabelSet.from_examples(examples)
    assert len(labels.coarse) == 6 and len(labels.fine) == 50


def test_fold_mix_top():
    labels = L.LabelSet(coarse=("HUM", "LOC"), fine=("HUM:ind", "LOC:city", "LOC:other"))
    folded = L.fold_fine([0.2, 0.5, 0.3], labels)
    assert folded == pytest.approx([0.2, 0.8])
    assert L.mix([1.0, 0.0], folded, 0.5) == pytest.approx([0.6, 0.4])
    assert list(L.top([0.2, 0.5, 0.3], labels.fine, k=2)) == ["LOC:city", "LOC:other"]


def test_prepare_rejects_empty_and_clips_long_text():
    for bad in ("", "   \n\t ", None):
        with pytest.raises(InputError, match="question"):
            text.prepare(bad, 64)
    assert text.prepare("  What   is ``X'' ?", 64).text == 'What is "X" ?'
    long = text.prepare("why " * 25_000, 64)
    assert long.clipped and len(long.text) <= 64 * text.CHARS_PER_TOKEN


def test_features_find_wh_word_and_head():
    pieces = ["what", "is", "the", "capital", "of", "france", "?"]
    assert feat.head_word(pieces)[:2] == ("what", "capital")
    assert feat.words_of(["play", "##ing", "it"]) == ["playing", "it"]
    f = feat.features(pieces)
    assert "f01:what is" in f and "h:capital" in f and "bias" in f
    vocab = feat.FeatureVocab.build([f, f, ["u:rare"]])
    assert "u:rare" not in vocab.index and vocab.ids(["bias"]) == [1]


# ---------------------------------------------------------------- tokenizer

def test_tokenizer_round_trip(tmp_path):
    from demos.questions import wordpiece

    tok = wordpiece.build(VOCAB)
    tok.save(str(tmp_path / "tokenizer.json"))
    again = wordpiece.load(tmp_path / "tokenizer.json")
    batch = wordpiece.encode(again, ["What is the capital of France?", "Çà?"], max_len=64)
    assert wordpiece.decode(again, batch.ids[0]).replace(" ?", "?") == "what is the capital of france?"
    assert batch.pieces[0][0] == "what" and batch.ids[1][0] == 2  # [CLS]
    assert len(batch.ids[0]) == len(batch.ids[1])  # padded
    cut = wordpiece.encode(again, ["word " * 200], max_len=16)
    assert cut.truncated == [True] and len(cut.ids[0]) == 16 and cut.ids[0][-1] == 3  # [SEP]


# ---------------------------------------------------------------- training and runtime

@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    from demos.questions import train

    out = tmp_path_factory.mktemp("questions-model")
    train.main(["--out", str(out), "--limit", "300", "--epochs", "2", "--members", "2",
                "--dim", "8", "--channels", "8"])
    return out


def test_training_writes_a_loadable_folder(tiny_folder):
    import json

    from demos.questions import runtime

    for name in ("model.safetensors", "config.json", "tokenizer.json", "features.json", "README.md",
                 "examples/examples.json"):
        assert (tiny_folder / name).is_file(), name
    config = json.loads((tiny_folder / "config.json").read_text())
    assert config["framework"] == "pytorch" and config["trained"] is True
    assert config["coarse_names"]["NUM"] == "numeric value"
    assert "validation" in config and "python -m demos.questions.train" in config["command"]
    model = runtime.load(tiny_folder)
    result = runtime.predict(model, {"text": "Who wrote Hamlet?"})
    assert sum(result["coarse"].values()) == pytest.approx(1.0, abs=1e-3)


def test_evaluate_prints_both_accuracies(tiny_folder, tmp_path, capsys):
    from demos.questions import evaluate

    sample = tmp_path / "sample.label"
    sample.write_bytes(TREC.read_bytes()[:3000])
    sample.write_text("\n".join(sample.read_text(encoding="latin-1").splitlines()[:-1]), encoding="latin-1")
    evaluate.main(["--data", str(sample), "--model", str(tiny_folder)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("coarse accuracy: 0.") and lines[1].startswith("fine accuracy: 0.")


@pytest.fixture(scope="module")
def trained():
    from demos.questions import runtime

    return runtime.load(MODEL)


def test_trained_model_answers_plain_data(trained):
    from demos.questions import runtime

    r = runtime.predict(trained, {"text": "What is the capital of France?"})
    assert next(iter(r["coarse"])) == "LOC" and r["coarse_name"] == "location"
    assert r["truncated"] is False and r["notice"] is None
    assert all(type(v) is float for v in [*r["coarse"].values(), *r["fine"].values()])
    assert runtime.predict(trained, {"text": "How many moons does Jupiter have?"})["fine_label"] == "NUM:count"


def test_batch_matches_single(trained):
    from demos.questions import runtime

    qs = ["Who wrote Hamlet?", "When did the Berlin Wall fall?", "Why is the sky blue?"]
    batch = runtime.predict(trained, {"texts": qs})
    assert [b["fine_label"] for b in batch] == [runtime.predict(trained, {"text": q})["fine_label"] for q in qs]
    for b, q in zip(batch, qs):
        assert b["coarse"] == pytest.approx(runtime.predict(trained, {"text": q})["coarse"], abs=1e-3)


def test_bad_inputs(trained):
    import time

    from demos.questions import runtime

    with pytest.raises(InputError, match="empty"):
        runtime.predict(trained, {"text": "   "})
    with pytest.raises(InputError):
        runtime.predict(trained, {"texts": []})
    with pytest.raises(InputError):
        runtime.predict(trained, "not a dict")
    started = time.perf_counter()
    r = runtime.predict(trained, {"text": "What is " + "very " * 20_000 + "big?"})
    assert time.perf_counter() - started < 2 and r["truncated"] and "only the beginning" in r["notice"]
    gibberish = runtime.predict(trained, {"text": "xqzv blorf wunkle ploo"})
    assert gibberish["confidence"] < 0.9


def test_placeholder_folder_is_loadable_and_says_untrained(tmp_path):
    from demos.questions import runtime

    runtime.placeholder(tmp_path)
    result = runtime.predict(runtime.load(tmp_path), {"text": "Who wrote Hamlet?"})
    assert result["trained"] is False and set(result["coarse"]) == {"ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"}


# ---------------------------------------------------------------- distillation path (fake teacher, no package)

def test_augment_keeps_first_word_and_is_seeded():
    from demos.questions import teacher

    texts = ["What is the capital of France ?", "Who wrote Hamlet ?", "Why ?"]
    a, b = teacher.augment(texts, 2, 0), teacher.augment(texts, 2, 0)
    assert a == b and {k for k, _ in a} == {0, 1}
    assert all(t.split()[0] == texts[k].split()[0] for k, t in a)


def test_bert_encoder_loads_bert_names():
    import torch

    from demos.questions import teacher

    conf = {"hidden_size": 8, "layer_norm_eps": 1e-12, "vocab_size": 20, "max_position_embeddings": 16,
            "type_vocab_size": 2, "num_attention_heads": 2, "intermediate_size": 16, "num_hidden_layers": 1}
    net = teacher.Teacher(conf, 6, 50)
    w = {"embeddings.word_embeddings.weight": torch.randn(20, 8),
         "embeddings.position_embeddings.weight": torch.randn(16, 8),
         "embeddings.token_type_embeddings.weight": torch.randn(2, 8),
         "embeddings.LayerNorm.weight": torch.ones(8), "embeddings.LayerNorm.bias": torch.zeros(8)}
    for theirs, shape in (("attention.self.query", (8, 8)), ("attention.self.key", (8, 8)),
                          ("attention.self.value", (8, 8)), ("attention.output.dense", (8, 8)),
                          ("attention.output.LayerNorm", (8,)), ("intermediate.dense", (16, 8)),
                          ("output.dense", (8, 16)), ("output.LayerNorm", (8,))):
        w[f"encoder.layer.0.{theirs}.weight"] = torch.randn(shape)
        w[f"encoder.layer.0.{theirs}.bias"] = torch.randn(shape[0])
    net.load_bert(w)
    net.eval()
    zc, zf = net(torch.tensor([[2, 5, 3, 0]]), torch.tensor([[True, True, True, False]]))
    assert zc.shape == (1, 6) and zf.shape == (1, 50)


def test_distilled_student_with_fake_teacher(tmp_path, monkeypatch):
    import json

    import torch

    from demos.questions import runtime, teacher, train

    vocab = [t.strip() for t in VOCAB.read_text(encoding="utf-8").splitlines()[:3000]]
    monkeypatch.setattr(teacher, "model_dir", lambda: tmp_path)
    monkeypatch.setattr(teacher, "word_embeddings",
                        lambda path: (torch.randn(len(vocab), 384), {t: i for i, t in enumerate(vocab)}))

    def fake_soft_labels(train_texts, coarse, fine, n_coarse, n_fine, label_texts, cache, **kw):
        return {t: (torch.randn(n_coarse), torch.randn(n_fine)) for t in label_texts}

    monkeypatch.setattr(teacher, "soft_labels", fake_soft_labels)
    out = tmp_path / "student"
    train.main(["--out", str(out), "--limit", "200", "--epochs", "1", "--members", "1", "--dim", "8",
                "--channels", "8", "--pretrained-dim", "16", "--distill", "0.5", "--augment", "1"])
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["pretrained_dim"] == 16 and config["teacher"]["validation"]["n"] > 0
    assert "--distill 0.5" in config["command"]
    result = runtime.predict(runtime.load(out), {"texts": ["Who wrote Hamlet?", "Why?"]})
    assert len(result) == 2 and sum(result[0]["fine"].values()) <= 1.0 + 1e-3
