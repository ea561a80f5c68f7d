"""The Spaces Dockerfile, checked without a Docker engine: its settings follow
Spaces conventions and its start command, run with its environment, serves."""

from __future__ import annotations

import json
import re
import shlex

from support import PROJECT_ROOT, TEST_DEMOS, free_port

import subprocess
import sys
import time
import urllib.request


def dockerfile() -> dict:
    text = (PROJECT_ROOT / "Dockerfile").read_text()
    joined = re.sub(r"\\\n", " ", text)
    env: dict[str, str] = {}
    parsed = {"env": env, "run": [], "text": text}
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        op, _, rest = line.partition(" ")
        if op == "ENV":
            for token in shlex.split(rest):
                key, _, value = token.partition("=")
                env[key] = value
        elif op == "ARG":
            key, _, value = rest.strip().partition("=")
            parsed.setdefault("args", {})[key] = value
        elif op in ("FROM", "USER", "EXPOSE", "WORKDIR"):
            value = rest.strip()
            for key, default in parsed.get("args", {}).items():  # ${NAME} at its default
                value = value.replace(f"${{{key}}}", default)
            parsed[op.lower()] = value
        elif op == "CMD":
            parsed["cmd"] = json.loads(rest)
        elif op == "RUN":
            parsed["run"].append(rest)
    return parsed


def pinned(package: str) -> str:
    for line in (PROJECT_ROOT / "requirements.txt").read_text().splitlines():
        if line.startswith(f"{package}=="):
            return line.split("==")[1].strip()
    raise AssertionError(f"{package} is not pinned in requirements.txt")


def test_dockerfile_follows_spaces_conventions():
    d = dockerfile()
    assert d["from"].startswith("python:3.11")
    assert "--uid 1000" in d["text"] and d["user"] == "user"
    assert d["expose"] == "7860" and d["env"]["HUB_PORT"] == "7860"
    assert d["env"]["HUB_HOST"] == "0.0.0.0"
    for key in ("HF_HOME", "HUB_CACHE_DIR"):
        assert d["env"][key].startswith("/home/user/"), key
    install = " ".join(d["run"])
    assert d["args"]["TORCH_INDEX"].endswith("/whl/cpu"), "by default torch comes from the CPU-only wheel index"
    assert '--index-url "$TORCH_INDEX"' in install
    assert "grep -E '^torch(vision)?==' requirements.txt" in install  # the pinned pair, read where it is pinned
    assert pinned("torch") and pinned("torchvision")
    assert "-r requirements.txt" in install
    assert d["cmd"] == ["python", "hub.py"]


def test_readme_has_docker_space_front_matter():
    readme = (PROJECT_ROOT / "README.md").read_text()
    front = readme.split("---")[1]
    assert re.search(r"^sdk: docker$", front, re.M)
    assert re.search(r"^app_port: 7860$", front, re.M)


def test_container_start_command_serves_with_the_dockerfile_environment(tmp_path):
    d = dockerfile()
    env = {k: v.replace("/home/user", str(tmp_path)).replace("$PATH", "") for k, v in d["env"].items()}
    port = free_port()
    env.update(HUB_HOST="127.0.0.1", HUB_PORT=str(port), HUB_DEMOS_DIR=str(TEST_DEMOS),
               PATH=f"{PROJECT_ROOT / '.venv' / 'bin'}:/usr/bin:/bin")
    cmd = [sys.executable if part == "python" else part for part in d["cmd"]]
    proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, "the start command exited"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                    assert json.loads(resp.read())["demos"] == ["alpha", "beta"]
                    break
            except OSError:
                assert time.monotonic() < deadline, "no answer on HUB_PORT"
                time.sleep(0.3)
        from gradio_client import Client

        result = Client(f"http://127.0.0.1:{port}/", verbose=False).predict('{"value": 9}', api_name="/alpha")
        assert result["echo"] == 9
        assert (tmp_path / ".cache" / "demohub" / "placeholders" / "alpha" / "config.json").is_file()
    finally:
        proc.terminate()
        proc.wait(timeout=15)
