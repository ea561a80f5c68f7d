"""Fair queueing (demohub.web.fair): one visitor cannot take the whole queue.

The decisions are tables; the rest runs against a real hub with real HTTP clients,
each bound to its own loopback address (127.0.0.0/8 is all loopback), so every
address is a different visitor to the hub. Clients speak the queue protocol the
page and gradio_client use: POST /gradio_api/queue/join, then the session's event
stream at /gradio_api/queue/data. Every job is a new session, as a client that
opens a new connection per job would make it: the limit must hold anyway.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from pathlib import Path

import httpx
import pytest

from demohub.backends.local.spawn import PIPELINE_DEPTH
from demohub.config import load_config
from demohub.web.fair import Ledger, decide, visitor
from support import TEST_DEMOS, gone, running_hub

LIMIT = 4


# --- the decisions, as tables ------------------------------------------------------------------

@pytest.mark.parametrize("host, key", [
    ("127.0.0.2", "127.0.0.2"),
    ("203.0.113.7", "203.0.113.7"),
    ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),      # one host holds a whole /64
    ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
    ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
    ("::ffff:198.51.100.4", "198.51.100.4"),             # IPv4 seen through an IPv6 socket
    ("/run/hub.sock", "/run/hub.sock"),                  # not an address: the name itself
    ("", "unknown"),
    (None, "unknown"),
])
def test_a_visitor_is_an_address_or_an_ipv6_slash_64(host, key):
    assert visitor(host) == key


@pytest.mark.parametrize("holding, limit, refused", [
    (0, 4, False), (3, 4, False), (4, 4, True), (9, 4, True),
    (0, 1, False), (1, 1, True),
    (0, 0, False), (500, 0, False),  # 0: no limit
])
def test_a_join_is_refused_only_when_the_visitor_already_holds_the_limit(holding, limit, refused):
    verdict = decide(holding, limit)
    assert (verdict is not None) == refused
    if refused:
        assert verdict.status == 429
        assert f"already have {holding} job" in verdict.message
        assert "Wait for one of them to finish" in verdict.message


def test_the_ledger_counts_joins_in_flight_and_forgets_ended_jobs():
    live: set[str] = set()
    ledger = Ledger()
    joins = [ledger.reserve("a") for _ in range(3)]
    assert ledger.holding("a", live.__contains__) == 3  # answered or not, a join holds a place
    live.update({"e1", "e2"})
    ledger.admit(joins[0], "e1")
    ledger.admit(joins[1], "e2")
    ledger.release(joins[2])  # refused by Gradio (queue full): no event id
    ledger.release(joins[0])  # releasing an admitted join again changes nothing
    assert ledger.holding("a", live.__contains__) == 2
    assert ledger.holding("b", live.__contains__) == 0
    live.discard("e1")  # Gradio forgot it: the job ended, however it ended
    assert ledger.holding("a", live.__contains__) == 1
    live.clear()
    assert ledger.holding("b", live.__contains__) == 0
    assert ledger._events == {} and not ledger._joining  # nothing kept for visitors with no jobs


def test_the_settings_default_to_four_jobs_and_uvicorns_trusted_proxies(monkeypatch):
    for name in ("HUB_PER_CLIENT_QUEUE", "HUB_FORWARDED_ALLOW_IPS"):
        monkeypatch.delenv(name, raising=False)
    door = load_config([]).door
    assert (door.per_client_queue, door.forwarded_allow_ips) == (4, "127.0.0.1,::1")
    monkeypatch.setenv("HUB_PER_CLIENT_QUEUE", "2")
    monkeypatch.setenv("HUB_FORWARDED_ALLOW_IPS", "10.0.0.0/8")
    door = load_config([]).door
    assert (door.per_client_queue, door.forwarded_allow_ips) == (2, "10.0.0.0/8")
    assert load_config(["--forwarded-allow-ips", " 10.0.0.0/8 , ::1"]).door.forwarded_allow_ips == "10.0.0.0/8,::1"
    assert load_config(["--forwarded-allow-ips", "*"]).door.forwarded_allow_ips == "*"
    # bad values are refused with a sentence: tests/test_settings.py's table


# --- a real hub --------------------------------------------------------------------------------

def write_demos(demos: Path) -> Path:
    """`slow` (sleeps as asked, 60 s deadline) and `brief` (a 2 s deadline), both the
    test demos' numpy runtime, in a folder named `fairdemos`."""
    assert demos.name == "fairdemos"
    for name, timeout in (("slow", 60.0), ("brief", 2.0)):
        (demos / name).mkdir(parents=True)
        (demos / name / "__init__.py").write_text(
            "from demohub.spec import DemoSpec\n"
            f"SPEC = DemoSpec(name='{name}', title='{name.title()}', description='A test demo.', "
            f"runtime='fairdemos.{name}.runtime', tab='fairdemos.{name}.tab', baseline_concurrency=4, "
            f"predict_timeout_s={timeout}, load_timeout_s=60.0)\n")
        (demos / name / "runtime.py").write_text((TEST_DEMOS / "echo_runtime.py").read_text())
        (demos / name / "tab.py").write_text((TEST_DEMOS / "tab_common.py").read_text())
    return demos


@pytest.fixture(scope="module")
def demos_dir(tmp_path_factory) -> Path:
    return write_demos(tmp_path_factory.mktemp("fair") / "fairdemos")


@pytest.fixture(scope="module")
def hub(demos_dir):
    # One worker per model, so a model takes a known number of jobs at once (one
    # running, one staged) and the rest wait in Gradio's queue.
    with running_hub("--demos-dir", str(demos_dir), "--max-copies", "1",
                     "--forwarded-allow-ips", "127.0.0.9",
                     env={"HUB_PER_CLIENT_QUEUE": str(LIMIT)}) as server:
        yield server


class Visitor:
    """One visitor: HTTP from its own loopback address, a new session per job."""

    def __init__(self, hub, address: str, headers: dict[str, str] | None = None):
        self.hub = hub
        self.http = httpx.AsyncClient(
            base_url=hub.url.rstrip("/"), timeout=30, headers=headers,
            transport=httpx.AsyncHTTPTransport(local_address=address,
                                               limits=httpx.Limits(max_connections=300)))
        self._fns = None

    async def close(self) -> None:
        await self.http.aclose()

    async def fn(self, api_name: str) -> dict:
        if self._fns is None:
            config = (await self.http.get("/config")).json()
            self._fns = {d.get("api_name"): d for d in config["dependencies"]}
        return self._fns[api_name]

    async def join(self, request: dict, api_name: str = "slow") -> Job:
        session = uuid.uuid4().hex
        body = {"data": [json.dumps(request)], "fn_index": (await self.fn(api_name))["id"],
                "session_hash": session, "event_data": None, "trigger_id": None}
        sent = time.monotonic()
        answer = await self.http.post("/gradio_api/queue/join", json=body)
        return Job(self, session, body["fn_index"], answer, time.monotonic() - sent)


class Job:
    def __init__(self, owner: Visitor, session: str, fn_index: int, answer: httpx.Response, seconds: float):
        self.owner, self.session, self.fn_index = owner, session, fn_index
        self.status = answer.status_code
        self.payload = answer.json()
        self.join_seconds = seconds
        self.answered = 0.0  # seconds into a flood when the join was answered (set by `flood`)
        self.event_id = self.payload.get("event_id")

    @property
    def admitted(self) -> bool:
        return self.status == 200

    async def result(self, timeout: float = 60) -> dict:
        """The job's completion message, read from its session's event stream."""
        async def read() -> dict:
            async with self.owner.http.stream("GET", "/gradio_api/queue/data",
                                              params={"session_hash": self.session}) as stream:
                async for line in stream.aiter_lines():
                    if line.startswith("data:"):
                        message = json.loads(line[5:])
                        if message.get("msg") == "process_completed" and message.get("event_id") == self.event_id:
                            return message
            raise AssertionError(f"the stream of {self.event_id} ended without its completion")
        return await asyncio.wait_for(read(), timeout)

    async def listen_then_hang_up(self) -> None:
        """Open the job's event stream, read its first message, and disconnect."""
        async with self.owner.http.stream("GET", "/gradio_api/queue/data",
                                          params={"session_hash": self.session}) as stream:
            async for line in stream.aiter_lines():
                if line.startswith("data:"):
                    return

    async def cancel(self) -> None:
        answer = await self.owner.http.post("/gradio_api/cancel", json={
            "session_hash": self.session, "fn_index": self.fn_index, "event_id": self.event_id})
        assert answer.status_code == 200, answer.text


def refusals(hub) -> dict[str, float]:
    text = hub.get("/metrics")[1]
    return {line.split('"')[1]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line.startswith("demohub_queue_refusals_total{")}


def limit_lines(hub) -> list[dict]:
    return [json.loads(line) for line in hub.logs().splitlines() if '"event": "per_visitor_limit"' in line]


def run(coro, timeout: float = 120):
    """Every test's clients run under one deadline."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


# --- the flood -----------------------------------------------------------------------------------

async def flood(hub, flooder: str, others: list[str], jobs: int = 200, finish: bool = True) -> dict:
    """`flooder` sends `jobs` one-second jobs as fast as 20 connections take them; once
    it has been refused the first time (the flood is holding all it can), each of
    `others` sends one request. Returns what each side saw; with `finish`, once the
    admitted flood jobs have all answered too (without, the caller's hub is
    stopped with them still queued)."""
    bad = Visitor(hub, flooder)
    good = [Visitor(hub, address) for address in others]
    saturated = asyncio.Event()
    connections = asyncio.Semaphore(20)
    try:
        for v in (bad, *good):
            await v.fn("slow")  # each reads the page's config once, as a browser would
        started = time.monotonic()

        async def flood_job(n: int) -> Job:
            async with connections:
                job = await bad.join({"op": "sleep", "seconds": 1.0, "value": n})
            job.answered = time.monotonic() - started
            if not job.admitted:
                saturated.set()
            return job

        async def one_request(v: Visitor, n: int) -> tuple[bool, float, str]:
            await asyncio.wait_for(saturated.wait(), 60)
            sent = time.monotonic()
            job = await v.join({"op": "echo", "value": f"visitor {n}"})
            if not job.admitted:
                return False, time.monotonic() - sent, job.payload.get("detail", "")
            try:
                message = await job.result(timeout=10)
            except asyncio.TimeoutError:
                return False, time.monotonic() - sent, "no answer within 10 s"
            ok = message["success"] and message["output"]["data"][0]["echo"] == f"visitor {n}"
            return ok, time.monotonic() - sent, ""

        burst = asyncio.gather(*(flood_job(n) for n in range(jobs)))
        answers = await asyncio.gather(*(one_request(v, n) for n, v in enumerate(good)))
        flood_jobs = await burst
        flood_seconds = max(j.answered for j in flood_jobs)
        admitted = [j for j in flood_jobs if j.admitted]
        finished = await asyncio.gather(*(j.result(timeout=90) for j in admitted)) if finish else []
        return {"answers": answers, "admitted": admitted, "refused": [j for j in flood_jobs if not j.admitted],
                "finished": finished, "flood_seconds": flood_seconds}
    finally:
        for v in (bad, *good):
            await v.close()


def test_one_visitor_flooding_200_jobs_leaves_the_others_served_and_is_refused_at_once(hub):
    before = refusals(hub)
    seen = run(flood(hub, "127.0.0.2", ["127.0.0.3", "127.0.0.4", "127.0.0.5"]))
    print(f"\nper-client-queue {LIMIT}: flooder {len(seen['admitted'])} admitted, {len(seen['refused'])} "
          f"refused in {seen['flood_seconds']:.2f} s; others answered in "
          + ", ".join(f"{s:.2f} s" for _, s, _ in seen["answers"]))
    for ok, seconds, why in seen["answers"]:
        assert ok, why
        assert seconds < 10
    # Each admitted job holds its place for at least its 1 s sleep, so while the flood was
    # being answered at most LIMIT places could turn over per second.
    assert len(seen["admitted"]) <= LIMIT * (1 + int(seen["flood_seconds"]))
    assert len(seen["admitted"]) + len(seen["refused"]) == 200
    for job in seen["refused"]:  # refused, not queued: answered at once, with the count
        assert job.status == 429
        assert f"You already have {LIMIT} jobs waiting or running" in job.payload["detail"]
    assert all(m["success"] for m in seen["finished"])
    after = refusals(hub)
    assert after["per_visitor"] - before["per_visitor"] == len(seen["refused"])
    # one log line each time the flooder reached the limit (again after a job of its ended)
    told = [line for line in limit_lines(hub) if line["visitor"] == "127.0.0.2"]
    assert 1 <= len(told) <= len(seen["admitted"]) - LIMIT + 1 and told[0]["jobs"] == LIMIT
    assert after["queue_full"] == before["queue_full"]
    # ...and once its jobs ended the flooder is a visitor like any other again.
    async def again() -> float:
        v = Visitor(hub, "127.0.0.2")
        try:
            return await _free(v, deadline_s=1)
        finally:
            await v.close()

    run(again())


def test_without_the_limit_the_same_flood_refuses_or_delays_the_others(demos_dir):
    """The baseline: Gradio's queue alone (--per-client-queue 0, --queue-size 32)."""
    with running_hub("--demos-dir", str(demos_dir), "--max-copies", "1", "--per-client-queue", "0") as hub:
        # The ~32 queued one-second jobs are not waited for (half a minute of the suite): the
        # hub is stopped with its queue full, and must still end at once and take its worker along.
        seen = run(flood(hub, "127.0.0.2", ["127.0.0.3", "127.0.0.4", "127.0.0.5"], jobs=200, finish=False),
                   timeout=150)
        workers = hub.worker_pids()
        print(f"\nno per-client limit: flooder {len(seen['admitted'])} admitted, {len(seen['refused'])} refused "
              f"in {seen['flood_seconds']:.2f} s; others: "
              + ", ".join(f"{'ok' if ok else why} {s:.2f} s" for ok, s, why in seen["answers"]))
        assert len(seen["admitted"]) >= 32  # the whole queue
        assert any(not ok or seconds >= 10 for ok, seconds, _ in seen["answers"])
        assert refusals(hub)["queue_full"] >= len(seen["refused"]) > 0
        assert workers
        stopping = time.monotonic()
        hub.stop()
    assert time.monotonic() - stopping < 15 and hub.proc.returncode == 128 + signal.SIGTERM, hub.logs()[-2000:]
    assert hub.logs().strip().splitlines()[-1] == "demo hub: stopped"
    assert [pid for pid in workers if not gone(pid)] == []


# --- however a job ends, it stops counting -----------------------------------------------------

async def _fill(v: Visitor, n: int, request: dict, api_name: str = "slow") -> list[Job]:
    jobs = [await v.join(request, api_name) for _ in range(n)]
    return jobs


async def _full(v: Visitor) -> bool:
    """One more join is refused with the count (checked with a job that would return at once)."""
    extra = await v.join({"op": "echo"})
    if extra.admitted:
        await extra.result()
        return False
    assert f"You already have {LIMIT} jobs" in extra.payload["detail"], extra.payload
    return True


async def _free(v: Visitor, deadline_s: float) -> float:
    """Seconds until the visitor may hold LIMIT jobs again (checked by sending them; their
    answers are awaited after the clock stops)."""
    started = time.monotonic()
    while True:
        jobs = await _fill(v, LIMIT, {"op": "echo"})
        seconds = time.monotonic() - started
        await asyncio.gather(*(j.result() for j in jobs if j.admitted))
        if all(j.admitted for j in jobs):
            return seconds
        assert time.monotonic() - started < deadline_s, "the visitor's ended jobs still count"
        await asyncio.sleep(0.2)


@pytest.mark.parametrize("ending", ["completed", "raised", "timed out", "cancelled"])
def test_a_job_stops_counting_however_it_ends(hub, ending):
    address = {"completed": "127.0.0.11", "raised": "127.0.0.12", "timed out": "127.0.0.13",
               "cancelled": "127.0.0.14"}[ending]
    request, api_name = {
        "completed": ({"op": "sleep", "seconds": 0.5}, "slow"),
        "raised": ({"op": "sleep", "seconds": 0.5, "then": "error"}, "slow"),
        "timed out": ({"op": "sleep", "seconds": 30}, "brief"),  # brief's deadline is 2 s
        "cancelled": ({"op": "sleep", "seconds": 3}, "slow"),
    }[ending]

    async def scenario() -> float:
        v = Visitor(hub, address)
        try:
            jobs = await _fill(v, LIMIT, request, api_name)
            assert all(j.admitted for j in jobs), [j.payload for j in jobs]
            assert await _full(v)
            if ending == "cancelled":
                await asyncio.gather(*(j.cancel() for j in jobs))
                seconds = await _free(v, deadline_s=15)
                # at once: the cancelled ones would have held their places for 3 s and more
                assert seconds < 2
                return seconds
            outcomes = await asyncio.gather(*(j.result() for j in jobs))
            assert [m["success"] for m in outcomes] == [ending == "completed"] * LIMIT
            return await _free(v, deadline_s=15)
        finally:
            await v.close()

    print(f"\n{ending}: free again after {run(scenario()):.2f} s")


def test_a_visitor_who_hangs_up_stops_counting_for_the_jobs_that_were_waiting(hub):
    """The jobs still waiting in Gradio's queue are dropped when their client goes;
    the ones the model is running count until they end."""

    async def scenario() -> None:
        v = Visitor(hub, "127.0.0.15")
        try:
            running = PIPELINE_DEPTH  # one worker (--max-copies 1): the jobs Gradio hands it at once
            assert running < LIMIT, "the model must take fewer jobs at once than the limit for this test"
            jobs = await _fill(v, LIMIT, {"op": "sleep", "seconds": 4})
            assert all(j.admitted for j in jobs) and await _full(v)
            await asyncio.gather(*(j.listen_then_hang_up() for j in jobs))
            hung_up = time.monotonic()
            await asyncio.sleep(0.5)
            # the waiting ones are gone at once: their places are free again...
            again = await _fill(v, LIMIT - running, {"op": "echo"})
            assert all(j.admitted for j in again), [j.payload for j in again]
            # ...while the running ones still hold theirs
            assert await _full(v)
            assert time.monotonic() - hung_up < 4
            await asyncio.gather(*(j.result() for j in again))
            await _free(v, deadline_s=15)
        finally:
            await v.close()

    run(scenario())


def test_x_forwarded_for_names_the_visitor_only_from_a_named_proxy(hub):
    """The hub trusts 127.0.0.9 as its proxy: behind it, two visitors are two visitors;
    a client elsewhere that writes the header itself is still its own address."""

    async def scenario() -> None:
        behind = Visitor(hub, "127.0.0.9", headers={"X-Forwarded-For": "203.0.113.7"})
        other = Visitor(hub, "127.0.0.9", headers={"X-Forwarded-For": "203.0.113.8"})
        spoofer = Visitor(hub, "127.0.0.16", headers={"X-Forwarded-For": "203.0.113.7"})
        appended = Visitor(hub, "127.0.0.9", headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.7"})
        try:
            jobs = await _fill(behind, LIMIT, {"op": "sleep", "seconds": 2})
            assert all(j.admitted for j in jobs)
            assert await _full(behind)
            # a visitor who writes a made-up first hop is still the address the proxy saw
            assert await _full(appended)
            extra = [await other.join({"op": "echo"}), await spoofer.join({"op": "echo"})]
            assert [j.admitted for j in extra] == [True, True]
            await asyncio.gather(*(j.result() for j in [*jobs, *extra]))
            # the log names the visitor, not the proxy: how an operator checks the setting
            told = {line["visitor"] for line in limit_lines(hub)}
            assert "203.0.113.7" in told and "127.0.0.9" not in told
        finally:
            for v in (behind, other, spoofer, appended):
                await v.close()

    run(scenario())


def test_the_call_api_joins_the_same_count(hub):
    """`POST /gradio_api/call/<name>` puts a job in the same queue: it counts and is refused
    like a join."""

    async def scenario() -> None:
        v = Visitor(hub, "127.0.0.17")
        try:
            sleep = {"data": [json.dumps({"op": "sleep", "seconds": 1})]}
            called = [await v.http.post("/gradio_api/call/slow", json=sleep) for _ in range(LIMIT)]
            assert [c.status_code for c in called] == [200] * LIMIT
            assert await _full(v)
            refused = await v.http.post("/gradio_api/call/v2/slow", json={"data": ['{"op": "echo"}']})
            assert refused.status_code == 429 and f"already have {LIMIT} jobs" in refused.json()["detail"]
            for c in called:  # each job's result stream, as a /call/ client reads it
                answer = await v.http.get(f"/gradio_api/call/slow/{c.json()['event_id']}")
                assert "event: complete" in answer.text
            await _free(v, deadline_s=15)
        finally:
            await v.close()

    run(scenario())
