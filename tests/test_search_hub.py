"""The search demo through a real hub: gradio_client -> hub -> worker forked from
the torch template, on a small index built on the fly."""

from __future__ import annotations

import json

import pytest
from gradio_client.exceptions import AppError

from support import mapped_framework_libs, running_hub


@pytest.fixture(scope="module")
def server(search_model):
    with running_hub("--only", "search", "--model", f"search={search_model}") as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    return server.client()


def test_one_public_endpoint_returning_a_ranked_json_list(client, server):
    assert set(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) == {"/search"}
    results = client.predict("fear of small closed spaces", 4, "any", api_name="/search")
    assert isinstance(results, list) and len(results) == 4
    assert "claustrophobia" in results[0]["words"]
    assert all({"id", "words", "pos", "gloss", "score"} <= set(r) for r in results)
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
    nouns = client.predict("a tool for cutting wood", 5, "noun", api_name="/search")
    assert {r["pos"] for r in nouns} == {"noun"}
    like = client.predict(f"like:{nouns[0]['id']}", 3, "any", api_name="/search")
    assert nouns[0]["id"] not in [r["id"] for r in like] and len(like) == 3
    embedded = client.predict("embed:a tool for cutting wood", 5, "any", api_name="/search")
    assert len(embedded) == 1 and embedded[0]["dim"] == len(embedded[0]["vector"]) == 384
    assert embedded[0]["text"] == "a tool for cutting wood"
    assert not mapped_framework_libs(server.pid)  # no torch, tokenizers or faiss in the hub
    workers = server.worker_pids()
    assert len(workers) == 1 and {"_swigfaiss.abi3.so"} <= mapped_framework_libs(workers[0])


def test_the_torch_template_imports_the_search_runtime_but_not_faiss(server, client):
    """The template imports every runtime of its family, search's too, but faiss only
    in the worker's load: cassava and questions workers forked from the same template
    would otherwise carry faiss and its own OpenMP runtime (docs/benchmarks.md: their
    cold loads were slower with it). The template stays single-threaded."""
    assert client.predict("a tool for cutting wood", 1, "any", api_name="/search")  # the template is up
    events = [json.loads(line) for line in server.logs().splitlines() if line.startswith('{"ts"')]
    started = [e for e in events if e["event"] == "template_start"]
    ready = [e for e in events if e["event"] == "template_ready"]
    assert started and any(r.endswith("search.runtime") for r in started[0]["runtimes"]), started
    assert ready and ready[0]["threads"] == ["template:torch"] and not ready[0]["failed"], ready
    assert '"template_unsafe"' not in server.logs()
    libs = mapped_framework_libs(ready[0]["pid"])
    assert any("torch" in lib for lib in libs) and not any("faiss" in lib for lib in libs), libs


@pytest.mark.parametrize("args,message", [
    (("", 5, "any"), "empty"),
    (("x" * 10_000, 5, "any"), "10,000 characters"),
    ((5, 5, "any"), "as text"),
    (({"query": "dog"}, 5, "any"), "as text"),
    (("\u200b\u2060", 5, "any"), "no visible characters"),
    (("like:nope", 5, "any"), "No passage has the id 'nope'"),
    (("embed:", 5, "any"), "needs the text to encode"),
    (("like:99999999-n", 5, "any"), "No passage has the id"),
    (("dog", 0, "any"), "minimum value 1"),
    (("dog", 10**6, "any"), "maximum value 50"),
    (("dog", 5, "pronoun"), "list of choices"),
])
def test_hostile_inputs_get_a_sentence_and_the_model_keeps_serving(client, args, message):
    with pytest.raises(AppError, match=message):
        client.predict(*args, api_name="/search")
    assert client.predict("a young dog", 1, "any", api_name="/search")[0]["words"][0] == "puppy"
