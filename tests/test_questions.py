"""Questions demo without a hub: pure text/label/feature functions, the
tokenizer, a tiny training run, and the runtime on the saved folder."""

from __future__ import annotations

import pytest

from demohub.errors import InputError
from demos.questions import labels as L
from demos.questions import text
from support import PROJECT_ROOT, SHARED_DATA

TREC = SHARED_DATA / "trec" / "train_5500.label"
VOCAB = SHARED_DATA / "questions" / "wordpiece-vocab-10k.txt"
MODEL = PROJECT_ROOT / "models" / "questions"
#: tests that read the TREC training set or the WordPiece vocabulary from ../shared/data
needs_shared = pytest.mark.skipif(
    not (TREC.is_file() and VOCAB.is_file()),
    reason=f"needs {TREC} (the TREC training set) and {VOCAB} (the WordPiece vocabulary): "
           "../shared/data beside the checkout, see its README")


# ---------------------------------------------------------------- pure functions

@needs_shared
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
    long = text.prepare("why " * 450, 64)
    assert long.clipped and len(long.text) <= 64 * text.CHARS_PER_TOKEN


def test_int8_round_trip_is_close_and_keeps_small_tensors_fp16():
    import torch

    from demos.questions.quant import SCALE, dequantize, quantize

    gen = torch.Generator().manual_seed(0)
    state = {"w": torch.randn(40, 30, generator=gen) * torch.linspace(0.01, 3, 40)[:, None],
             "b": torch.randn(30, generator=gen), "ids": torch.arange(5)}
    stored = quantize(state)
    assert stored["w"].dtype == torch.int8 and stored["w" + SCALE].shape == (40, 1)
    assert stored["b"].dtype == torch.float16 and stored["ids"].dtype == torch.int64
    back = dequantize(stored)
    assert set(back) == set(state)
    row_max = state["w"].abs().amax(1, keepdim=True)
    assert ((back["w"] - state["w"]).abs() <= row_max / 254 + 1e-3).all()  # half a step per row
    assert torch.allclose(back["b"], state["b"], atol=1e-2) and back["ids"].equal(state["ids"])


def test_vocab_vectors_map_pieces_exactly_or_by_their_parts():
    import torch

    from demos.questions.teacher import vocab_vectors

    theirs = {"[UNK]": 0, "play": 1, "##ing": 2, "fly": 3, "##er": 4}
    emb = torch.arange(5, dtype=torch.float32)[:, None].repeat(1, 2)
    split = {"player": ["play", "##er"], "flying": ["fly", "##ing"], "zz": ["[UNK]"]}.__getitem__
    table, exact = vocab_vectors(["play", "##ing", "player", "##flying", "zz"], emb, theirs, split)
    assert exact == 2
    assert table[:, 0].tolist() == [1.0, 2.0, 2.5, 2.5, 0.0]  # "##flying": ##fly is unknown, so fly + ##ing


# ---------------------------------------------------------------- tokenizer

@needs_shared
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
    train.main(["--out", str(out), "--limit", "300", "--epochs", "2", "--init", "scratch", "--layers", "1",
                "--dim", "16", "--heads", "2", "--inner", "32", "--lr", "1e-3"])
    return out


@needs_shared
def test_training_writes_a_loadable_folder(tiny_folder):
    import json

    from demos.questions import runtime

    for name in ("model.safetensors", "config.json", "tokenizer.json", "README.md",
                 "examples/examples.json"):
        assert (tiny_folder / name).is_file(), name
    config = json.loads((tiny_folder / "config.json").read_text())
    assert config["framework"] == "pytorch" and config["trained"] is True
    assert config["coarse_names"]["NUM"] == "numeric value"
    assert "validation" in config and "python -m demos.questions.train" in config["command"]
    model = runtime.load(tiny_folder)
    result = runtime.predict(model, {"text": "Who wrote Hamlet?"})
    assert sum(result["coarse"].values()) == pytest.approx(1.0, abs=1e-3)


@needs_shared
def test_training_is_seeded(tmp_path):
    from demos.questions import train

    args = ["--limit", "120", "--epochs", "1", "--init", "scratch", "--layers", "1", "--dim", "8", "--heads", "2",
            "--inner", "16", "--no-full"]
    for name in ("a", "b"):
        train.main(["--out", str(tmp_path / name), *args])
    import torch

    from demos.questions import folder

    a, b = (folder.load(tmp_path / name).model.state_dict() for name in ("a", "b"))
    # Same seed, same numbers: equal up to float summation order in multi-threaded kernels
    # (one int8 step at most); a different seed moves weights by far more.
    assert all(torch.allclose(a[k], b[k], atol=0.02) for k in a)
    train.main(["--out", str(tmp_path / "c"), *args, "--seed", "1"])
    c = folder.load(tmp_path / "c").model.state_dict()
    assert not torch.allclose(a["word.weight"], c["word.weight"], atol=0.02)


def test_shipped_folder_is_complete_small_and_safe():
    import json

    from safetensors import safe_open

    files = [f for f in MODEL.rglob("*") if f.is_file()]
    assert sum(f.stat().st_size for f in files) <= 10_000_000  # 10 MB, the decimal reading
    assert not [f for f in files if f.suffix in (".pt", ".pth", ".bin", ".pkl", ".pickle")]
    config = json.loads((MODEL / "config.json").read_text())
    assert config["trained"] is True and config["validation"]["n"] >= 500
    assert "python -m demos.questions.train" in config["command"]
    with safe_open(str(MODEL / "model.safetensors"), "pt") as f:
        assert f.metadata().get("quantized") == "int8-rows"
    card = (MODEL / "README.md").read_text()
    assert f"{config['validation']['fine_accuracy']:.3f}" in card and config["command"] in card


@needs_shared
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
    r = runtime.predict(trained, {"text": "What is " + "very " * 350 + "big?"})
    assert time.perf_counter() - started < 2 and r["truncated"] and "only the beginning" in r["notice"]
    gibberish = runtime.predict(trained, {"text": "xqzv blorf wunkle ploo"})
    assert gibberish["confidence"] < 0.9


@needs_shared
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


def fake_minilm(folder, vocab: list[str], dim: int = 16, layers: int = 2):
    """A MiniLM-shaped folder (BERT names, config, vocab, tokenizer) with tiny random weights."""
    import json

    import torch
    from safetensors.torch import save_file
    from tokenizers.implementations import BertWordPieceTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    BertWordPieceTokenizer(str(folder / "vocab.txt"), lowercase=True)._tokenizer.save(str(folder / "tokenizer.json"))
    conf = {"hidden_size": dim, "layer_norm_eps": 1e-12, "vocab_size": len(vocab), "max_position_embeddings": 64,
            "type_vocab_size": 2, "num_attention_heads": 2, "intermediate_size": 2 * dim,
            "num_hidden_layers": layers}
    (folder / "config.json").write_text(json.dumps(conf))
    gen = torch.Generator().manual_seed(1)
    w = {"embeddings.word_embeddings.weight": (len(vocab), dim), "embeddings.position_embeddings.weight": (64, dim),
         "embeddings.token_type_embeddings.weight": (2, dim)}
    w = {k: torch.randn(shape, generator=gen) * 0.1 for k, shape in w.items()}
    w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"] = torch.ones(dim), torch.zeros(dim)
    for i in range(layers):
        for theirs, shape in (("attention.self.query", (dim, dim)), ("attention.self.key", (dim, dim)),
                              ("attention.self.value", (dim, dim)), ("attention.output.dense", (dim, dim)),
                              ("attention.output.LayerNorm", (dim,)), ("intermediate.dense", (2 * dim, dim)),
                              ("output.dense", (dim, 2 * dim)), ("output.LayerNorm", (dim,))):
            w[f"encoder.layer.{i}.{theirs}.weight"] = torch.randn(shape, generator=gen) * 0.1
            w[f"encoder.layer.{i}.{theirs}.bias"] = torch.zeros(shape[0])
    save_file(w, str(folder / "model.safetensors"))
    return w


@needs_shared
def test_bert_state_renames_and_folds_token_type_into_positions(tmp_path):
    import torch

    from demos.questions import teacher
    from demos.questions.model import Encoder, ModelConfig

    vocab = [t.strip() for t in VOCAB.read_text(encoding="utf-8").splitlines()[:500]]
    w = fake_minilm(tmp_path, vocab, layers=2)
    sd = teacher.bert_state(w, [1], max_len=16)
    assert torch.equal(sd["layers.0.q.weight"], w["encoder.layer.1.attention.self.query.weight"])
    assert torch.allclose(sd["pos.weight"], w["embeddings.position_embeddings.weight"][:16]
                          + w["embeddings.token_type_embeddings.weight"][0])
    cfg = ModelConfig(vocab_size=500, n_coarse=6, n_fine=50, max_len=16, dim=16, heads=2, inner=32, layers=1)
    net = teacher.load_into(Encoder(cfg), sd).eval()
    zc, zf = net(torch.tensor([[2, 50, 3, 0]]))
    again, _ = net(torch.tensor([[2, 50, 3]]))
    assert zc.shape == (1, 6) and zf.shape == (1, 50)
    assert torch.allclose(zc, again, atol=1e-5)  # padding changes nothing


@needs_shared
def test_distilled_student_with_a_tiny_minilm(tmp_path, monkeypatch):
    """The whole --init minilm path (teacher fine-tuning, soft labels, student
    init, distillation, int8 save) against a tiny MiniLM-shaped folder."""
    import json

    from demos.questions import runtime, teacher, train

    vocab = [t.strip() for t in VOCAB.read_text(encoding="utf-8").splitlines()[:3000]]
    fake_minilm(tmp_path / "minilm", vocab)
    monkeypatch.setattr(teacher, "model_dir", lambda: tmp_path / "minilm")
    monkeypatch.setattr(train, "PROJECT_ROOT", tmp_path)  # the teacher cache goes under tmp
    out = tmp_path / "student"
    train.main(["--out", str(out), "--limit", "200", "--epochs", "1", "--layers", "1", "--augment", "1",
                "--teacher-epochs", "1", "--distill", "0.5"])
    config = json.loads((out / "config.json").read_text())
    assert config["init"] == "minilm" and config["model"]["dim"] == 16 and config["model"]["layers"] == 1
    assert config["teacher"]["validation"]["n"] > 0 and "--distill 0.5" in config["command"]
    assert list((tmp_path / ".cache" / "questions").glob("teacher-*.safetensors"))
    assert "Distilled from a teacher" in (out / "README.md").read_text()
    result = runtime.predict(runtime.load(out), {"texts": ["Who wrote Hamlet?", "Why?"]})
    assert len(result) == 2 and sum(result[0]["fine"].values()) <= 1.0 + 1e-3


def fake_mpnet(folder, vocab: list[str], dim: int = 16, layers: int = 1):
    """An all-mpnet-base-v2-shaped folder: transformers' weight names (our tiny
    MPNet's random weights renamed back), config and a tokenizer, no package."""
    import json

    import torch
    from safetensors.torch import save_file
    from tokenizers.implementations import BertWordPieceTokenizer

    from demos.questions import mpnet
    from demos.questions.model import ModelConfig

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    BertWordPieceTokenizer(str(folder / "vocab.txt"), lowercase=True)._tokenizer.save(str(folder / "tokenizer.json"))
    conf = {"vocab_size": len(vocab), "max_position_embeddings": 64, "hidden_size": dim, "num_attention_heads": 2,
            "intermediate_size": 2 * dim, "num_hidden_layers": layers, "layer_norm_eps": 1e-5}
    (folder / "config.json").write_text(json.dumps(conf))
    torch.manual_seed(2)
    ours = mpnet.MPNet(ModelConfig(len(vocab), 1, 1, 64, dim, 2, 2 * dim, layers, eps=1e-5)).state_dict()
    theirs = {"embeddings.word_embeddings.weight": "word.weight", "embeddings.position_embeddings.weight": "pos.weight",
              "embeddings.LayerNorm.weight": "ln.weight", "embeddings.LayerNorm.bias": "ln.bias",
              "encoder.relative_attention_bias.weight": "rel.weight"}
    for i in range(layers):
        for short, long in (("q", "attention.attn.q"), ("k", "attention.attn.k"), ("v", "attention.attn.v"),
                            ("o", "attention.attn.o"), ("ln1", "attention.LayerNorm"), ("up", "intermediate.dense"),
                            ("down", "output.dense"), ("ln2", "output.LayerNorm")):
            for p in ("weight", "bias"):
                theirs[f"encoder.layer.{i}.{long}.{p}"] = f"layers.{i}.{short}.{p}"
    save_file({f"mpnet.{k}": ours[v].contiguous() for k, v in theirs.items()}, str(folder / "model.safetensors"))


@needs_shared
def test_a_student_distilled_from_a_tiny_mpnet_says_so_in_its_card(tmp_path, monkeypatch):
    """`--teacher mpnet`: the MPNet teacher is fine-tuned, labels the questions
    (cached under its own key), and the folder's config, command and card name it;
    the student still starts from MiniLM's pieces."""
    import json

    from demos.questions import mpnet, runtime, teacher, train

    vocab = [t.strip() for t in VOCAB.read_text(encoding="utf-8").splitlines()[:3000]]
    fake_minilm(tmp_path / "minilm", vocab)
    fake_mpnet(tmp_path / "mpnet", vocab)
    monkeypatch.setattr(teacher, "model_dir", lambda: tmp_path / "minilm")
    monkeypatch.setattr(mpnet, "model_dir", lambda *a: tmp_path / "mpnet")
    monkeypatch.setattr(train, "PROJECT_ROOT", tmp_path)
    common = ["--limit", "120", "--epochs", "1", "--layers", "1", "--augment", "1", "--teacher-epochs", "1",
              "--no-full"]
    train.main(["--out", str(tmp_path / "from-mpnet"), "--teacher", "mpnet", *common])
    train.main(["--out", str(tmp_path / "from-minilm"), *common])
    config = json.loads((tmp_path / "from-mpnet" / "config.json").read_text())
    assert config["teacher"]["kind"] == "mpnet" and config["teacher"]["source"] == mpnet.SOURCE
    assert "--teacher mpnet" in config["command"]
    assert "--teacher " not in json.loads((tmp_path / "from-minilm" / "config.json").read_text())["command"]
    card = (tmp_path / "from-mpnet" / "README.md").read_text()
    assert "MPNet-base teacher" in card and "requirements-mpnet.txt" in card
    assert len(list((tmp_path / ".cache" / "questions").glob("teacher-*.safetensors"))) == 2  # one key each
    result = runtime.predict(runtime.load(tmp_path / "from-mpnet"), {"texts": ["Who wrote Hamlet?"]})
    assert len(result) == 1 and result[0]["fine"]
