"""Search demo: describe something, find the word. Semantic search (MiniLM +
faiss) over WordNet's 117,659 glosses, with BM25 keyword search beside it.

Imported by the hub process: gradio/stdlib/demohub only. The encoder, the index
and the keyword arrays live in `runtime` (worker process only)."""

from demohub.spec import DemoSpec

#: Descriptions that share few words with the gloss they mean: where an encoder beats keywords.
EXAMPLES = (
    "a tool for cutting wood",
    "fear of small closed spaces",
    "a person who bakes bread for a living",
    "feeling sad because you are far from home",
    "to walk slowly without any purpose",
    "extremely happy",
    "a young dog",
    "money paid to free a kidnapped person",
)

SPEC = DemoSpec(
    name="search",
    title="Reverse dictionary",
    description=(
        "Describe a thing, an action or a quality in your own words; semantic search finds the "
        "WordNet entries that mean it (a reverse dictionary over 117,659 glosses), with BM25 keyword "
        "search beside it so you can see what the encoder adds. `query` is a description, or "
        "`like:<id>` for entries like a result; `k` 1-50; `pos` any, noun, verb, adj or adv. Returns the "
        'results in rank order, each {"id", "words", "pos", "gloss", "score"}; `embed:<text>` returns '
        'the text\'s vector instead, [{"text", "dim", "encoder", "vector"}].'
    ),
    runtime="demos.search.runtime",
    tab="demos.search.tab",
    examples=EXAMPLES,
    predict_timeout_s=20.0,
    load_timeout_s=120.0,
    expected_load_s=2.0,
    baseline_concurrency=4,
    model_files=("config.json", "model.safetensors", "tokenizer.json", "index.faiss", "passages.jsonl",
                 "*.npy", "bm25/*", "LICENSE-corpus.txt", "README.md"),
    # one short query per call: a GPU would cost more in copies than it saves
    device="cpu",
)
