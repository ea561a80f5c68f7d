"""The queue rests while nobody asks and wakes on the next request: on a real
Gradio queue object, and on a real hub seen through /metrics and gradio_client."""

from __future__ import annotations

import json
import threading
import time
import urllib.request

import gradio as gr

from demohub.web.pacing import IDLE_POLL_S, IDLE_PROGRESS_POLL_S, QueuePacer
from support import TEST_DEMOS, running_hub
from test_metrics import scrape, value


def gradio_queue():
    with gr.Blocks() as blocks:
        box = gr.Textbox()
        box.submit(lambda text: text, box, box)
    blocks.queue()
    return blocks._queue


def test_rests_after_the_quiet_time_and_wakes_to_gradios_own_intervals():
    queue = gradio_queue()
    own = (queue.sleep_when_free, queue.progress_update_sleep_when_free)
    pacer = QueuePacer(queue, quiet_after_s=10)
    start = time.monotonic()
    pacer.check(now=start + 5)
    assert not pacer.resting and pacer.poll_interval == own[0]
    pacer.check(now=start + 11)
    assert pacer.resting
    assert (queue.sleep_when_free, queue.progress_update_sleep_when_free) == (IDLE_POLL_S, IDLE_PROGRESS_POLL_S)
    pacer.wake()
    assert (queue.sleep_when_free, queue.progress_update_sleep_when_free) == own
    pacer.check(now=time.monotonic() + 5)  # the quiet time starts again at the request
    assert not pacer.resting


def test_never_rests_with_work_queued_or_running_or_when_disabled():
    queue = gradio_queue()
    pacer = QueuePacer(queue, quiet_after_s=1)
    queue.active_jobs = [[object()]]  # what start_processing holds while an event runs
    pacer.check(now=time.monotonic() + 60)
    assert not pacer.resting
    queue.active_jobs = [None]
    pacer.check(now=time.monotonic() + 60)
    assert pacer.resting
    off = QueuePacer(gradio_queue(), quiet_after_s=0)
    off.check(now=time.monotonic() + 3600)
    assert not off.resting


def poll_seconds(hub) -> float:
    with urllib.request.urlopen(hub.url + "metrics", timeout=30) as resp:
        return value(scrape(resp.read().decode()), "demohub_queue_poll_seconds")


def wait_for_poll(hub, expected: float, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while poll_seconds(hub) != expected:
        assert time.monotonic() < deadline, f"the queue's poll did not become {expected} s"
        time.sleep(0.2)


def test_a_real_hub_rests_answers_the_next_caller_and_stays_awake_while_a_request_runs():
    with running_hub("--demos-dir", str(TEST_DEMOS), "--only", "alpha", "--queue-rest-after", "1") as hub:
        client = hub.client()
        assert client.predict(json.dumps({"value": 1}), api_name="/alpha")["echo"] == 1
        wait_for_poll(hub, IDLE_POLL_S, 10)  # scrapes (/metrics) do not wake it
        started = time.monotonic()
        assert client.predict(json.dumps({"value": 2}), api_name="/alpha")["echo"] == 2
        assert poll_seconds(hub) < IDLE_POLL_S and time.monotonic() - started < 5
        # a request that runs longer than the quiet time keeps the queue awake until it ends
        slow = threading.Thread(target=client.predict, args=(json.dumps({"op": "sleep", "seconds": 4}),),
                                kwargs={"api_name": "/alpha"})
        slow.start()
        time.sleep(3)
        assert poll_seconds(hub) < IDLE_POLL_S
        slow.join(timeout=30)
        wait_for_poll(hub, IDLE_POLL_S, 10)
