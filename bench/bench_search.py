"""The search demo's speed and memory, side by side in one run.

    .venv/bin/python bench/bench_search.py --model models/search        # ~5 min on 2 busy cores

1. warm `/search` over plain HTTP (POST /gradio_api/call/search, read the stream): p50 and
   min-max of `--calls` calls, k=10, every result the tab shows by default (BM25 column included);
2. cold first answer with a warm template: the model evicted by its idle TTL, the torch
   template kept (`--template-ttl` longer), the next call timed from the client, `--colds` times;
3. memory: a worker's PSS with the index loaded (what --memory-budget counts, from the
   hub's load event), and two copies of the runtime in two processes against one
   (PSS summed: the index, passages and keyword arrays are mapped, so they share pages);
4. cassava's and questions' cold loads forked from a warm torch template, before
   (`--only cassava,questions`) and after (`--only cassava,questions,search`) the search
   runtime joined the family, alternated round by round, with the template's import time.

Every server binds 127.0.0.1 and is ended by PID. `uptime`'s load is printed with each figure:
the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vs_baseline import IMAGES, ROOT, Server, free_port, http_predict  # noqa: E402
from common import log_events  # noqa: E402

QUERIES = ("a tool for cutting wood", "fear of small closed spaces", "a person who bakes bread for a living",
           "feeling sad because you are far from home", "to walk slowly without any purpose", "extremely happy",
           "a young dog", "money paid to free a kidnapped person")


def load_avg() -> str:
    return "load %.2f %.2f %.2f" % os.getloadavg()


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def search(http: httpx.Client, url: str, query: str, k: int = 10, pos: str = "any") -> list:
    resp = http.post(f"{url}/gradio_api/call/search", json={"data": [query, k, pos]})
    resp.raise_for_status()
    resp = http.get(f"{url}/gradio_api/call/search/{resp.json()['event_id']}")
    resp.raise_for_status()
    if "event: complete" not in resp.text:
        raise RuntimeError(resp.text[:300])
    data = resp.text.split("event: complete", 1)[1].split("data:", 1)[1].strip()
    return json.loads(data)[0]


def events(server: Server) -> list[dict]:
    return log_events(server.log_path)


def hub(args: list[str], tmp: Path, name: str) -> Server:
    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, str(ROOT / "hub.py"), "--host", "127.0.0.1", "--port", str(port),
           "--cache-dir", str(ROOT / ".cache" / "bench-search"), *args]  # placeholders built once
    server = Server(name, cmd, ROOT, env, tmp / f"{name}-{port}.log", port)
    server.wait_page()
    return server


def wait_event(server: Server, kind: str, count: int, timeout: float, **match) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [e for e in events(server) if e.get("event") == kind and all(e.get(k) == v for k, v in match.items())]
        if len(found) >= count:
            return found
        time.sleep(0.25)
    raise RuntimeError(f"no {count} {kind} events {match} in {timeout} s:\n{server.log_tail()}")


def template_settled(server: Server, timeout: float = 300) -> psutil.Process:
    """The torch template, once it has imported its family (--prewarm; its CPU falls to ~0)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tpl = [p for p in psutil.Process(server.pid).children() if p.name().startswith("template:torch")]
        if tpl and tpl[0].cpu_percent(interval=1.0) < 5:
            return tpl[0]
        time.sleep(0.5)
    raise RuntimeError(f"the torch template did not settle in {timeout} s:\n{server.log_tail()}")


def warm_and_cold(model: Path, calls: int, colds: int, tmp: Path) -> dict:
    ttl = 6
    server = hub(["--only", "search", "--model", f"search={model}", "--idle-ttl", str(ttl),
                  "--template-ttl", "600", "--prewarm"], tmp, "search")
    out: dict = {}
    try:
        template_settled(server)
        with httpx.Client(timeout=120) as http:
            first = time.perf_counter()
            search(http, server.url, QUERIES[0])
            out["first_answer_template_warm_s"] = time.perf_counter() - first
            load = wait_event(server, "load", 1, 10, model="search")[0]
            out["worker_pss_mb_at_load"] = load["memory_mb"]
            out["load_s"] = load["seconds"]
            times = []
            for i in range(calls):
                t = time.perf_counter()
                results = search(http, server.url, QUERIES[i % len(QUERIES)])
                times.append((time.perf_counter() - t) * 1000)
                assert len(results) == 10
            out["warm_ms"] = {"p50": statistics.median(times), "min": min(times), "max": max(times), "n": calls,
                              "p90": sorted(times)[int(0.9 * len(times))]}
            out["warm_load"] = load_avg()
            log(f"warm /search p50 {out['warm_ms']['p50']:.1f} ms ({min(times):.1f}-{max(times):.1f}), {load_avg()}")
            colds_s, loads_s = [], []
            for n in range(colds):
                wait_event(server, "evict", n + 1, ttl * 4 + 30, model="search")
                t = time.perf_counter()
                search(http, server.url, QUERIES[n % len(QUERIES)])
                colds_s.append(time.perf_counter() - t)
                loads_s.append(wait_event(server, "load", n + 2, 10, model="search")[-1]["seconds"])
            out["cold_first_answer_s"] = colds_s
            out["cold_worker_load_s"] = loads_s
            out["cold_load"] = load_avg()
            log(f"cold first answer with a warm template: {[round(c, 2) for c in colds_s]} s "
                f"(worker load {[round(c, 2) for c in loads_s]} s), {load_avg()}")
    finally:
        server.stop()
    return out


COPY = """
import os, sys, time
sys.path.insert(0, {root!r})
from demos.search import runtime   # the template: torch, tokenizers, faiss, bm25s imported, no model
print("template", os.getpid(), flush=True)
for line in sys.stdin:
    pid = os.fork()
    if pid == 0:
        m = runtime.load({model!r})
        runtime.predict(m, {{"query": "a tool for cutting wood"}})
        print("ready", os.getpid(), flush=True)
        time.sleep(600)
        os._exit(0)
"""


def pss(pid: int) -> int:
    return psutil.Process(pid).memory_full_info().pss


def copies(model: Path) -> dict:
    """Like the hub's template start method: one process imports the runtime, then forks a
    worker that loads the model, then a second one. PSS of each, summed with the template."""
    code = COPY.format(root=str(ROOT), model=str(model))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    tpl = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                           text=True)
    workers: list[int] = []
    out: dict = {}
    try:
        assert tpl.stdout.readline().startswith("template")
        for n in (1, 2):
            tpl.stdin.write("fork\n")
            tpl.stdin.flush()
            word, pid = tpl.stdout.readline().split()
            workers.append(int(pid))
            time.sleep(1)
            sizes = [pss(w) for w in workers]
            out[f"{n}_workers_pss_mb"] = [round(x / 2**20, 1) for x in sizes]
            out[f"{n}_workers_total_mb"] = round(sum(sizes) / 2**20, 1)
            out[f"{n}_with_template_mb"] = round((sum(sizes) + pss(tpl.pid)) / 2**20, 1)
        out["ratio_workers"] = round(out["2_workers_total_mb"] / out["1_workers_total_mb"], 3)
        out["ratio_with_template"] = round(out["2_with_template_mb"] / out["1_with_template_mb"], 3)
        out["load"] = load_avg()
        log(f"copies: one worker {out['1_workers_total_mb']} MiB, two {out['2_workers_total_mb']} MiB "
            f"({out['ratio_workers']}x; with the template {out['ratio_with_template']}x), {load_avg()}")
    finally:
        for w in workers:
            try:
                psutil.Process(w).kill()
            except psutil.NoSuchProcess:
                pass
        tpl.kill()
        tpl.wait()
    return out


def family(rounds: int, tmp: Path, model: Path) -> dict:
    """cassava's and questions' loads forked from a warm torch template, before and after search joined it."""
    configs = {"before": "cassava,questions", "after": "cassava,questions,search"}
    out: dict = {k: {"cassava_load_s": [], "questions_load_s": [], "template_import_s": [], "template_pss_mb": []}
                 for k in configs}
    photo = str(IMAGES / "cassava_1.jpg")
    server = hub(["--only", configs["after"], "--model", f"search={model}"], tmp, "family-warmup")
    try:  # unmeasured: cassava's placeholder is built into the cache dir, files are in the page cache
        with httpx.Client(timeout=600) as http:
            http_predict(http, server.url, "questions", "Who wrote Hamlet?")
            http_predict(http, server.url, "cassava", photo)
            search(http, server.url, QUERIES[0])
    finally:
        server.stop()
    for r in range(rounds):
        order = list(configs) if r % 2 == 0 else list(reversed(configs))
        for name in order:
            server = hub(["--only", configs[name], "--model", f"search={model}", "--prewarm",
                          "--template-ttl", "600"], tmp, f"family-{name}")
            try:
                tpl = template_settled(server)
                out[name]["template_pss_mb"].append(round(pss(tpl.pid) / 2**20, 1))
                with httpx.Client(timeout=300) as http:
                    for demo, value in (("questions", "Who wrote Hamlet?"), ("cassava", photo)):
                        http_predict(http, server.url, demo, value)
                        out[name][f"{demo}_load_s"].append(wait_event(server, "load", 1, 10, model=demo)[0]["seconds"])
                out[name]["template_import_s"].append(
                    wait_event(server, "template_ready", 1, 10, family="torch")[0]["seconds"])
            finally:
                server.stop()
            log(f"round {r} {name}: " + ", ".join(f"{k} {v[-1]}" for k, v in out[name].items()) + f", {load_avg()}")
    out["load"] = load_avg()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "search")
    ap.add_argument("--calls", type=int, default=100)
    ap.add_argument("--colds", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--skip", nargs="*", default=(), choices=("warm", "copies", "family"))
    args = ap.parse_args()
    model = args.model.resolve()
    result: dict = {"model": str(model), "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                    "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        if "warm" not in args.skip:
            result["hub"] = warm_and_cold(model, args.calls, args.colds, Path(tmp))
        if "copies" not in args.skip:
            result["copies"] = copies(model)
        if "family" not in args.skip:
            result["family"] = family(args.rounds, Path(tmp), model)
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
