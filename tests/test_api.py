"""The shipped demos through `gradio_client` against one running hub: the exact
public API, a good call per demo, and bad input answered with messages a person
can act on. Then the scrape: /metrics counts what happened, and the hub process
still has no framework mapped."""

from __future__ import annotations

import re

import pytest
from gradio_client import handle_file
from gradio_client.utils import sanitize_parameter_names
from gradio_client.exceptions import AppError

from demohub.discovery import discover
from support import CASSAVA_PHOTOS, DURIAN_PHOTO, PROJECT_ROOT, mapped_framework_libs

#: the sample photos the demos ship, by name
IMAGES = {p.name: p for p in (*CASSAVA_PHOTOS, DURIAN_PHOTO)}
#: one per demo folder, whatever folders there are (a new demo needs no edit here)
PUBLIC_ENDPOINTS = {f"/{spec.api_name}" for spec in discover(PROJECT_ROOT / "demos")}


@pytest.fixture(scope="module")
def client(demo_hub):
    return demo_hub.client()


def test_the_public_api_is_exactly_one_endpoint_per_demo(client):
    api = client.view_api(return_format="dict", print_info=False)
    assert set(api["named_endpoints"]) == PUBLIC_ENDPOINTS
    assert not api.get("unnamed_endpoints")


def descriptions(schema) -> list[str]:
    """Every description a client can read in a parameter's schema."""
    if isinstance(schema, dict):
        found = [v for k, v in schema.items() if k in ("description", "additional_description") and v]
        return found + [d for v in schema.values() for d in descriptions(v)]
    if isinstance(schema, list):
        return [d for v in schema for d in descriptions(v)]
    return []


def test_every_input_and_output_has_a_short_true_name_and_a_description(client):
    api = client.view_api(return_format="dict", print_info=False)
    for endpoint, info in api["named_endpoints"].items():
        assert info["description"], endpoint
        names = [p["parameter_name"] for p in info["parameters"]]
        names += [sanitize_parameter_names(r["label"]) for r in info["returns"]]
        for name in names:
            assert not re.fullmatch(r"(value|parameter)_\d+", name) and len(name) <= 20, (endpoint, name)
        for item in info["parameters"] + info["returns"]:
            assert item["python_type"]["description"], (endpoint, item["label"])
    assert "value_" not in client.view_api(return_format="str", print_info=False)
    endpoints = api["named_endpoints"]
    # the same things are called the same in every image demo
    for demo in ("/cassava", "/durian"):
        [photo] = endpoints[demo]["parameters"]
        assert photo["parameter_name"] == "photo"
        assert [sanitize_parameter_names(r["label"]) for r in endpoints[demo]["returns"]] == [
            "label", "heatmap", "report", "verdict"]
        said = " ".join(descriptions(photo)).lower()
        assert "url" not in said and "http" not in str(photo["example_input"]), said  # web addresses are refused
        assert "handle_file('photo.jpg')" in photo["python_type"]["description"]
        assert "web addresses and inline images are refused" in photo["python_type"]["description"]
    assert [p["parameter_name"] for p in endpoints["/questions"]["parameters"]] == ["question"]
    assert [sanitize_parameter_names(r["label"]) for r in endpoints["/questions"]["returns"]][2:] == [
        "report", "verdict"]


@pytest.mark.parametrize("demo,photo", [("cassava", "cassava_2.jpg"), ("durian", "durian_1.jpg")])
def test_image_demos_answer_with_a_flagged_verdict(client, demo, photo):
    label, heatmap, verdict, summary = client.predict(photo=handle_file(str(IMAGES[photo])), api_name=f"/{demo}")
    assert summary["trained"] is False  # placeholders until trained weights are configured
    assert "Untrained weights" in verdict
    assert summary["label"] in ("uncertain", summary["top_class"])
    assert abs(sum(summary["probabilities"].values()) - 1) < 1e-3
    assert label["label"] == ("Uncertain" if summary["uncertain"] else summary["top_class"])
    assert len(label["confidences"]) == len(summary["probabilities"])
    assert heatmap.endswith(".jpeg") or heatmap.endswith(".jpg")


@pytest.mark.parametrize("demo", ["cassava", "durian"])
def test_image_demos_explain_bad_input(client, demo, tmp_path):
    notes = tmp_path / "notes.jpg"
    notes.write_text("this is not a photo")
    truncated = tmp_path / "half.jpg"
    truncated.write_bytes((IMAGES["cassava_1.jpg"]).read_bytes()[:2000])
    cases = [
        (None, r"(?i)upload .*photo first"),
        (handle_file(str(notes)), "not an image we can read"),
        (handle_file(str(truncated)), "corrupt or truncated"),
        ({"path": "/etc/hostname"}, "paths on the server are not accepted"),
        ("hello", r"Send an image file: gradio_client\.handle_file"),
    ]
    for value, message in cases:
        with pytest.raises(AppError, match=message):
            client.predict(value, api_name=f"/{demo}")


def test_metrics_after_traffic_and_no_framework_in_the_hub(demo_hub, client):
    client.predict(handle_file(str(IMAGES["durian_1.jpg"])), api_name="/durian")
    client.predict(handle_file(str(IMAGES["cassava_1.jpg"])), api_name="/cassava")
    text = demo_hub.get("/metrics")[1]
    for demo in ("cassava", "durian"):  # loaded at least once (the shared hub's other users may evict them)
        assert f'demohub_model_state{{model="{demo}",state="ready"}} 1' in text
        assert re.search(rf'demohub_loads_total{{model="{demo}"}} [1-9]', text), text
    assert 'demohub_hits_total{model="cassava"}' in text
    assert "demohub_queue_length 0" in text
    assert mapped_framework_libs(demo_hub.pid) == set()


def test_queued_events_cannot_hold_every_gradio_thread(demo_hub):
    """Gradio's queue runs at most 40 jobs at once; the demos' limits, counted
    once per concurrency id, must leave room for every demo to be served."""
    import json

    config = json.loads(demo_hub.get("/config")[1])
    limits = {}
    for dep in config["dependencies"]:
        if dep.get("queue") is not False and dep.get("concurrency_limit"):
            limits[dep.get("concurrency_id") or dep["id"]] = dep["concurrency_limit"]
    assert sum(limits.values()) <= 40 - 4, limits


def test_mcp_reads_the_same_names_and_descriptions(tmp_path):
    """Gradio's MCP server describes a tool's parameters from its handler's
    docstring (gradio.utils.get_function_description, what gradio/mcp.py calls);
    the extra it needs is not installed here, so read what it would read."""
    from gradio.utils import get_function_description

    from demohub.backends import make_backend
    from demohub.registry import Registry
    from demohub.web.history import History
    from demohub.sources import ModelSources
    from demohub.web.ui import build_blocks

    specs = discover(PROJECT_ROOT / "demos")
    sources = ModelSources(specs, tmp_path, tmp_path / "placeholders")
    registry = Registry(specs, sources, backend=make_backend("spawn"))  # no model starts: nothing is called
    try:
        blocks = build_blocks(specs, registry, sources, History(registry))
    finally:
        registry.close()
    tools = {fn.api_name: fn for fn in blocks.fns.values() if fn.api_visibility == "public" and fn.fn}
    assert set(tools) == {s.api_name for s in specs}
    for name, fn in tools.items():
        _, parameters, returns = get_function_description(fn.fn)
        expected = {"questions": ["question"], "search": ["query", "k", "pos"]}.get(name, ["photo"])
        assert [p for p in parameters if p != "progress"] == expected
        assert all(parameters[p] for p in expected), parameters
        assert "Returns: " in fn.api_description  # the tool's description names its outputs
        if name == "search":
            assert [r.split(":")[0] for r in returns] == ["results"], returns
            continue
        assert [r.split(":")[0] for r in returns][2:] == ["report", "verdict"], returns
        if name != "questions":
            assert "web addresses are refused" in parameters["photo"]
            assert [r.split(":")[0] for r in returns] == ["label", "heatmap", "report", "verdict"]
