"""The questions demo through a real hub: gradio_client -> hub -> worker."""

from __future__ import annotations

import pytest
from gradio_client.exceptions import AppError

from support import PROJECT_ROOT, mapped_framework_libs, running_hub

MODEL = PROJECT_ROOT / "models" / "questions"


@pytest.fixture(scope="module")
def server():
    with running_hub("--only", "questions", "--model", f"questions={MODEL}") as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    return server.client()


def test_only_public_endpoint_is_questions(client):
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert names == {"/questions"}


def test_obvious_question_is_location(client, server):
    coarse, fine, summary, result = client.predict("What is the capital of France?", api_name="/questions")
    assert coarse["label"] == "location (LOC)" and "location" in summary
    assert fine["label"].startswith("LOC:")
    assert result["coarse_name"] == "location" and result["truncated"] is False
    assert abs(sum(result["coarse"].values()) - 1) < 1e-3
    assert not mapped_framework_libs(server.pid)


@pytest.mark.parametrize("text", ["", "   \n "])
def test_empty_question_is_a_clear_error(client, text):
    with pytest.raises(AppError, match="empty"):
        client.predict(text, api_name="/questions")


def test_huge_text_is_truncated_with_notice(client, server):
    _, _, summary, result = client.predict("Who " + "really " * 250 + "won?", api_name="/questions")
    assert result["truncated"] and "only the beginning" in summary
    gibberish = client.predict("ßxq zzvv ploo ¿¿", api_name="/questions")[3]
    assert 0 < gibberish["confidence"] < 0.9
    assert not mapped_framework_libs(server.pid)
