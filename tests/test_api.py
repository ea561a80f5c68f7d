"""The shipped demos through `gradio_client` against one running hub: the exact
public API, a good call per demo, and bad input answered with messages a person
can act on. Then the scrape: /metrics counts what happened, and the hub process
still has no framework mapped."""

from __future__ import annotations

import pytest
from gradio_client import handle_file
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


@pytest.mark.parametrize("demo,photo", [("cassava", "cassava_2.jpg"), ("durian", "durian_1.jpg")])
def test_image_demos_answer_with_a_flagged_verdict(client, demo, photo):
    label, heatmap, verdict, summary = client.predict(handle_file(str(IMAGES[photo])), api_name=f"/{demo}")
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
    client.predict(handle_file(str(IMAGES["cassava_1.jpg"])), api_name="/cassava")
    text = demo_hub.get("/metrics")[1]
    for demo in ("cassava", "durian"):
        assert f'demohub_model_state{{model="{demo}",state="ready"}} 1' in text
        assert f'demohub_loads_total{{model="{demo}"}} 1' in text
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
