"""Hub settings from command-line flags, with `HUB_*` environment variables as
defaults (so a Space or a Dockerfile can configure the hub without changing its
command).

Every setting is read and checked in one place, `SETTINGS`: a flag wins over its
variable, and a bad value from either ends the hub at start with one sentence
naming where it came from (`hub.py: error: HUB_MAX_MODELS: not a whole number:
'abc'`, exit 2), never a traceback and never a value that cannot work (a hub
that can load no model, a port that cannot exist). Checks that need the demos
(an unknown demo in `--model`) or what was measured before (a budget no model
fits) are in `demohub.checks`, run by hub.py after discovery.
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from demohub.backends import usable_cores
from demohub import PROJECT_ROOT
from demohub.device import validate as validate_device
from demohub.memory import MEMORY_METRICS
from demohub.registry import Limits
from demohub.spec import ModelSource

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_size(text: str) -> int:
    """'1.5G', '800M', '1048576' -> bytes (binary units)."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"not a size: {text!r} (try 4G or 800M)")
    number, unit = match.groups()
    return int(float(number) * _UNITS[(unit or "")[:1].lower()])


# -- one checker per kind of value: text in, value out, ValueError with a sentence ----------

def size(text: str) -> int:
    value = parse_size(text)
    if value < 1:
        raise ValueError(f"{text!r} is no room at all (try 4G or 800M)")
    return value


def count(minimum: int, meaning: str = "") -> Callable[[str], int]:
    """A whole number >= minimum; `meaning` documents what the smallest value means."""
    def check(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise ValueError(f"not a whole number: {text!r}") from None
        if value < minimum:
            raise ValueError(f"{value} is too small: the smallest is {minimum}{meaning}")
        return value
    check.metavar = "N"  # type: ignore[attr-defined]
    return check


YEAR_S = 365 * 24 * 3600.0


def seconds(minimum: float = 0.0, meaning: str = "") -> Callable[[str], float]:
    """A duration in seconds >= minimum."""
    def check(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise ValueError(f"not a number of seconds: {text!r} (try 30 or 0.5)") from None
        if not math.isfinite(value):
            raise ValueError(f"not a number of seconds: {text!r} (try 30 or 0.5)")
        if value < minimum:
            raise ValueError(f"{text.strip()} s is too short: the shortest is {minimum:g} s{meaning}")
        if value > YEAR_S:  # a thread's wait cannot be told much more; nobody means it
            raise ValueError(f"{text.strip()} s is more than a year{meaning or ''}")
        return value
    check.metavar = "SECONDS"  # type: ignore[attr-defined]
    return check


def port(text: str) -> int:
    """1-65535; 0 asks the OS for a free port (the startup line then says which)."""
    try:
        value = int(text.strip())
    except ValueError:
        raise ValueError(f"not a port number: {text!r} (1-65535, or 0 for any free port)") from None
    if not 0 <= value <= 65535:
        raise ValueError(f"{value} is not a port: use 1-65535, or 0 for any free port")
    return value


_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")


def host(text: str) -> str:
    """An IP address or a host name (whether it is this machine's is found at bind time)."""
    value = text.strip()
    if value.startswith("[") and value.endswith("]"):
        value = value[1:-1]
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    if _HOSTNAME.match(value) and not re.fullmatch(r"[\d.]+", value):
        return value
    raise ValueError(f"not a host: {text!r} (an address of this machine, e.g. 127.0.0.1 or 0.0.0.0)")


def choice(*options: str) -> Callable[[str], str]:
    def check(text: str) -> str:
        value = text.strip().lower()
        if value not in options:
            raise ValueError(f"{text!r} is not one of {', '.join(options)}")
        return value
    check.metavar = "{" + ",".join(options) + "}"  # type: ignore[attr-defined]
    return check


def switch(text: str) -> bool:
    """A yes/no environment variable."""
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("", "0", "false", "no", "off"):
        return False
    raise ValueError(f"{text!r} is not on or off (use 1 or 0)")


def device(text: str) -> str:
    value = text.strip().lower()
    try:
        return validate_device(value, "device")
    except ValueError:
        raise ValueError(f"{text!r} is not a device: use auto, cpu, cuda or cuda:N") from None


def ray_app_prefix(value: str) -> str:
    """A Serve application name must be plain."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", value):
        raise ValueError(f"{value!r}: use letters, digits, '-' and '_', e.g. team-a-")
    return value


def folder(text: str) -> Path:
    if not text.strip():
        raise ValueError("an empty path")
    return Path(text).expanduser().resolve()


def text_value(text: str) -> str:
    return text


def proxies(text: str) -> str:
    """uvicorn's --forwarded-allow-ips: '*', or addresses and networks, comma-separated
    (uvicorn would take a typo for a name that never matches, without a word)."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if items == ["*"]:
        return "*"
    for item in items:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ValueError(f"not an address or network: {item!r} (try 10.0.0.0/8,127.0.0.1)") from None
    return ",".join(items)


proxies.metavar = "ADDRESSES"  # type: ignore[attr-defined]


for _check, _name in ((size, "SIZE"), (port, "PORT"), (host, "HOST"), (folder, "DIR"), (device, "DEVICE"),
                      (ray_app_prefix, "PREFIX")):
    _check.metavar = _name  # type: ignore[attr-defined]


#: What --backend used to accept, before it named the backend and --start-method how
#: local workers start: `--backend spawn` gave templates unless --start-method spawn
#: was set too. Old values keep working with what they say, and a one-line notice.
LEGACY_BACKENDS = ("spawn", "template")


@dataclass(frozen=True)
class Setting:
    """One setting: its flag, its environment variable, its checker and default."""

    flag: str
    env: str | None
    check: Callable[[str], Any]
    default: str | None
    help: str
    switch: bool = False  # a flag without a value (store_true)
    metavar: str | None = None

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


SETTINGS: tuple[Setting, ...] = (
    Setting("--host", "HUB_HOST", host, "127.0.0.1", "interface to bind (0.0.0.0 in a container)"),
    Setting("--port", "HUB_PORT", port, "7860", "port to serve on, 1-65535 (0: any free port)"),
    Setting("--demos-dir", "HUB_DEMOS_DIR", folder, str(PROJECT_ROOT / "demos"), "one package per demo"),
    Setting("--models-dir", "HUB_MODELS_DIR", folder, str(PROJECT_ROOT / "models"),
            "local model folders, models/<demo>/"),
    Setting("--cache-dir", "HUB_CACHE_DIR", folder, str(PROJECT_ROOT / ".cache"),
            "placeholder model folders, each model's last measured load (for honest progress "
            "messages after a restart), and what runtimes derive from model folders "
            "(e.g. durian's traced graph) for the next worker"),
    Setting("--max-models", "HUB_MAX_MODELS", count(1, " (a hub with room for no model serves nothing)"),
            "3", "most models loaded at once, at least 1"),
    Setting("--memory-budget", "HUB_MEMORY_BUDGET", size, None,
            "memory budget for all workers, e.g. 6G (default none)"),
    Setting("--memory-metric", "HUB_MEMORY_METRIC", choice(*MEMORY_METRICS), "pss",
            f"how worker memory is measured: {', '.join(MEMORY_METRICS)}"),
    Setting("--eviction", "HUB_EVICTION", choice("cost", "lru"), "cost",
            "which model goes when room is needed: cost (what reloading it would cost its visitors, "
            "with a short stay after a load) or lru (least recently used)"),
    Setting("--idle-ttl", "HUB_IDLE_TTL", seconds(0.0, " (0 keeps models forever)"), "900",
            "seconds an idle model stays loaded; 0 keeps it forever"),
    Setting("--capacity-wait", "HUB_CAPACITY_WAIT", seconds(0.0, " (0: answer 'at capacity' at once)"), "30",
            "seconds a load waits for room before 'hub is at capacity'; 0: no wait"),
    Setting("--worker-threads", "HUB_WORKER_THREADS", count(0, " (0: the hub shares the cores between calls)"),
            "0", "CPU threads per call (default 0: the hub shares the cores between running calls)"),
    Setting("--max-copies", "HUB_MAX_COPIES", count(0, " (0: the default for the start method)"), "0",
            "most worker processes of one model when its requests pile up: a copy is added "
            "while every copy is busy and the memory budget has room, and ends after a minute "
            "it is not needed (default 0: the machine's cores, at most 4, with "
            "--start-method template, 1 with spawn; 1: one process per model; a demo's "
            "SPEC.max_copies can lower it)"),
    Setting("--only", "HUB_ONLY", text_value, "", "comma-separated demo names to serve (default: all)",
            metavar="NAMES"),
    Setting("--queue-size", "HUB_QUEUE_SIZE", count(1, " (a queue of 0 refuses every request)"), "32",
            "requests waiting per hub before 'busy, try again'"),
    Setting("--queue-rest-after", "HUB_QUEUE_REST_AFTER", seconds(0.0, " (0: never rest)"), "10",
            "seconds without a request after which Gradio's queue polls every 5 ms instead "
            "of every 1 ms, so an idle hub costs ~1 %% of a core, not ~3 %%; the next request "
            "wakes it (0: never rest)"),
    Setting("--mcp", "HUB_MCP", switch, "0", "also serve every demo as an MCP tool (needs gradio[mcp])",
            switch=True),
    Setting("--reload", "HUB_RELOAD", switch, "0",
            "the author's loop (make dev): watch demos/, the local model folders and demohub/ and "
            "reload only what a saved file changes; broken code shows on its tab instead of "
            "stopping the hub. For a demo author's own machine, never a public Space", switch=True),
    Setting("--backend", "HUB_BACKEND", choice("local", "ray", *LEGACY_BACKENDS), "local",
            "where models run: worker processes on this machine (local) or Ray Serve "
            "applications (ray); --start-method says how local workers start", metavar="{local,ray}"),
    Setting("--start-method", "HUB_START_METHOD", choice("template", "spawn"), "template",
            "how a local worker starts: forked from a per-framework template that has "
            "imported the framework (template, the default: less memory, faster loads; "
            "docs/benchmarks.md), or a fresh interpreter (spawn)"),
    Setting("--template-ttl", "HUB_TEMPLATE_TTL", seconds(0.0, " (0 keeps templates)"), None,
            "seconds a template with no model stays up; 0 keeps it (default: --idle-ttl)"),
    Setting("--prewarm", "HUB_PREWARM", switch, "0",
            "start the framework templates at startup, not on first use", switch=True),
    Setting("--ray-address", "RAY_ADDRESS", text_value, None,
            "Ray cluster to deploy to, e.g. ray://head:10001 (default: start a one-node Ray on 127.0.0.1)",
            metavar="ADDRESS"),
    Setting("--ray-max-replicas", "HUB_RAY_MAX_REPLICAS", count(1), "1", "most Ray Serve replicas per demo"),
    Setting("--ray-app-prefix", "HUB_RAY_APP_PREFIX", ray_app_prefix, "demohub-",
            "prefix of this hub's Serve application names, so two hubs can share a cluster"),
    Setting("--ray-connect-timeout", "HUB_RAY_CONNECT_TIMEOUT", seconds(1.0), "90",
            "seconds to wait for the Ray cluster to accept the hub as a driver before giving up"),
    Setting("--device", "HUB_DEVICE", device, None,
            "auto, cpu, cuda or cuda:N for every demo's worker (default: each demo's SPEC.device, "
            "normally auto); HUB_DEVICE_<NAME>=cpu overrides one demo"),
    Setting("--max-file-size", "HUB_MAX_FILE_SIZE", size, "20M", "largest upload accepted, e.g. 20M"),
    Setting("--max-body", "HUB_MAX_BODY", size, "1M", "largest request body on every route except uploads"),
    Setting("--api-docs", "HUB_API_DOCS", switch, "0",
            "serve /docs, /redoc, /openapi.json and the run history", switch=True),
    Setting("--status-every", "HUB_STATUS_EVERY", seconds(0.5), "3",
            "seconds between the Status tab's memory samples and its refreshes (and every tab's model line)"),
    Setting("--temp-ttl", "HUB_TEMP_TTL", seconds(1.0), "300",
            "seconds uploads and generated images stay in the temp folder"),
    Setting("--sessions", "HUB_SESSIONS", count(1), "16",
            "browser/client sessions whose Gradio state is kept in memory"),
    Setting("--per-client-queue", "HUB_PER_CLIENT_QUEUE", count(0, " (0: no limit)"), "4",
            "jobs one visitor (client address) may have waiting or running at once; the next is "
            "refused with a sentence saying so (0: no limit)"),
    Setting("--forwarded-allow-ips", "HUB_FORWARDED_ALLOW_IPS", proxies, "127.0.0.1,::1",
            "proxies trusted to name the client in X-Forwarded-For, as uvicorn's option: addresses "
            "or networks, comma-separated (README, 'Hugging Face Spaces', says what to set there)"),
)


class SettingError(ValueError):
    """A setting that cannot work; the message names it and says what to use."""


def resolve(flags: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """Each setting's value: the flag's if given, else its variable's, else the
    default, checked by its checker. Raises SettingError naming where a bad value
    came from. `flags` maps dest -> the flag's text (None: not given)."""
    values: dict[str, Any] = {}
    for s in SETTINGS:
        given = flags.get(s.dest)
        if s.switch:
            given = "1" if given else None
        source = s.flag
        if given is None and s.env and environ.get(s.env) not in (None, ""):
            given, source = environ[s.env], s.env
        if given is None:
            values[s.dest] = None if s.default is None else s.check(s.default)
            continue
        try:
            values[s.dest] = s.check(given)
        except ValueError as exc:
            raise SettingError(f"{source}: {exc}") from None
    return values


@dataclass(frozen=True)
class DoorSettings:
    """What the HTTP door accepts and how long the hub keeps temp files."""

    max_file_size: int = 20 * 2**20
    max_body: int = 2**20
    api_docs: bool = False
    temp_ttl_s: float = 300.0
    #: sessions whose Gradio state is kept; each holds at most one request's inputs
    sessions: int = 16
    #: jobs one visitor (client address) may have waiting or running; 0: no limit (demohub.web.fair)
    per_client_queue: int = 4
    #: proxies whose X-Forwarded-For names the client (addresses or networks, comma-separated, or *)
    forwarded_allow_ips: str = "127.0.0.1,::1"


@dataclass(frozen=True)
class HubConfig:
    host: str = "127.0.0.1"
    port: int = 7860
    demos_dir: Path = PROJECT_ROOT / "demos"
    models_dir: Path = PROJECT_ROOT / "models"
    cache_dir: Path = PROJECT_ROOT / ".cache"
    limits: Limits = Limits()
    models: dict[str, ModelSource] = field(default_factory=dict)
    #: where each `models` entry was set (`--model cassava=...`, `HUB_MODEL_CASSAVA`), for messages
    model_settings: dict[str, str] = field(default_factory=dict)
    only: tuple[str, ...] = ()
    queue_size: int = 32
    #: seconds without a request after which Gradio's queue polls slower (demohub.web.pacing); 0: never
    queue_rest_after_s: float = 10.0
    #: --status-every: the Status tab's sampling period and the page's refresh period
    status_every_s: float = 3.0
    mcp: bool = False
    #: the mechanism: "spawn" or "template" (local workers, by start method) or "ray" (Ray Serve)
    backend: str = "template"
    backend_options: dict = field(default_factory=dict)
    door: DoorSettings = field(default_factory=DoorSettings)
    #: sentences for the operator that do not stop the hub (each printed once at start)
    notices: tuple[str, ...] = ()
    #: --device / HUB_DEVICE for every worker (None: each demo's SPEC.device)
    device: str | None = None
    #: --reload: watch the demos and reload what changes (demohub.reload)
    reload: bool = False

    @property
    def placeholder_dir(self) -> Path:
        return self.cache_dir / "placeholders"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hub.py", description="Serve every demo under demos/ in one Gradio app. Each flag "
        "can also be set by the environment variable in brackets; a flag wins over its variable."
    )
    for s in SETTINGS:
        default = f"; default {s.default}" if s.default not in (None, "", "0") else ""
        text = f"{s.help} ({s.env}{default})" if s.env else s.help
        if s.switch:
            p.add_argument(s.flag, action="store_true", default=None, help=text)
        else:
            p.add_argument(s.flag, default=None, help=text, metavar=s.metavar or getattr(s.check, "metavar", None))
    p.add_argument("--model", action="append", default=[], metavar="NAME=SOURCE",
                   help="model source override: cassava=org/repo@rev or cassava=/path/to/folder "
                        "(also HUB_MODEL_<NAME>); a local folder must hold config.json")
    return p


def parse_model_overrides(pairs: list[str], environ: Mapping[str, str]
                          ) -> tuple[dict[str, ModelSource], dict[str, str]]:
    """--model NAME=SOURCE and HUB_MODEL_<NAME> (the flag wins): the sources and
    the setting each came from. A local folder must exist and hold config.json."""
    found: list[tuple[str, str, str]] = []  # (name, source text, setting as the operator wrote it)
    for key, value in sorted(environ.items()):
        if key.startswith("HUB_MODEL_") and value:
            found.append((key[len("HUB_MODEL_"):].lower(), value, f"{key}={value}"))
    for pair in pairs:
        name, sep, source = pair.partition("=")
        if not sep or not name.strip():
            raise SettingError(f"--model: expects NAME=SOURCE, e.g. cassava=org/repo@<sha> or "
                               f"cassava=/path/to/folder; got {pair!r}")
        found.append((name.strip(), source, f"--model {pair}"))
    overrides, settings = {}, {}
    for name, text, setting in found:
        try:
            source = ModelSource.parse(text)
        except ValueError as exc:
            raise SettingError(f"{setting}: {exc}") from None
        folder_path = source.local_dir
        if folder_path is not None and not folder_path.is_dir():
            raise SettingError(f"{setting}: no such folder {folder_path}; point it at a model folder "
                               "(config.json + weights)")
        if folder_path is not None and not (folder_path / "config.json").is_file():
            raise SettingError(f"{setting}: {folder_path} has no config.json; point it at a complete "
                               "model folder (config.json + weights)")
        overrides[name], settings[name] = source, setting
    return overrides, settings


def default_copies(start_method: str) -> int:
    """With templates, one copy per core (a CPU-bound call uses about one), at most 4.
    A spawned copy imports its framework again (seconds of CPU, hundreds of MB): one
    (docs/benchmarks.md, "copies of a busy model")."""
    if start_method != "template":
        return 1
    return max(1, min(4, usable_cores()))


def mechanism(backend: str, start_method: str, start_method_given: bool) -> tuple[str, str | None]:
    """(the backend to make: spawn, template or ray; a notice for a legacy value).

    `--backend` names where models run (local or ray); `--start-method` how local
    workers start. A legacy `--backend spawn|template` still means what it says,
    unless --start-method says otherwise, which is refused as contradictory."""
    if backend == "ray":
        return "ray", None
    if backend in LEGACY_BACKENDS:
        wanted = backend
        if start_method_given and start_method != wanted:
            raise SettingError(f"--backend {backend} contradicts --start-method {start_method}: "
                               f"use --backend local --start-method {start_method}")
        return wanted, (f"--backend {backend} (or HUB_BACKEND={backend}) now reads --backend local "
                        f"--start-method {wanted}; --backend names where models run (local or ray)")
    return start_method, None


#: settings that only one backend reads: given to another, they would be ignored without a word
ONLY_FOR = {"prewarm": ("template", "--start-method template"),
            "template_ttl": ("template", "--start-method template"),
            "max_copies": ("spawn template", "--backend local (Ray has --ray-max-replicas)"),
            "ray_max_replicas": ("ray", "--backend ray"),
            "ray_app_prefix": ("ray", "--backend ray"),
            "ray_connect_timeout": ("ray", "--backend ray")}


def unused_settings(backend: str, given: Mapping[str, bool]) -> list[str]:
    """Sentences for settings the operator set that this backend does not read."""
    flag = {s.dest: s.flag for s in SETTINGS}
    return [f"{flag[dest]} has no effect without {needs}" for dest, (backends, needs) in ONLY_FOR.items()
            if given.get(dest) and backend not in backends.split()]


def _backend_options(name: str, v: dict[str, Any], limits: Limits) -> dict:
    copies = max(1, v["max_copies"] or default_copies(name))
    if name == "template":
        ttl = limits.idle_ttl_s if v["template_ttl"] is None else (v["template_ttl"] or None)
        return {"threads": limits.worker_threads, "template_ttl_s": ttl, "prewarm": bool(v["prewarm"]),
                "max_copies": copies}
    if name != "ray":
        return {"threads": limits.worker_threads, "max_copies": copies}
    return {"address": v["ray_address"], "max_replicas": v["ray_max_replicas"],
            "idle_ttl_s": limits.idle_ttl_s, "threads": limits.worker_threads,
            # a Ray this hub starts itself offers the memory budget as its `memory` resource
            "local_memory_bytes": limits.memory_budget, "max_models": limits.max_models,
            "connect_timeout_s": v["ray_connect_timeout"],
            "app_prefix": v["ray_app_prefix"]}


def environment_notices(environ: Mapping[str, str]) -> list[str]:
    """Per-demo device variables are checked like the rest (SettingError); a HUB_*
    variable that is no setting is named with the closest one, as a typo in a
    Space's variables would otherwise be ignored without a word."""
    import difflib

    known = {s.env for s in SETTINGS if s.env}
    notices = []
    for key, value in sorted(environ.items()):
        if key.startswith("HUB_DEVICE_") and value.strip():
            try:
                device(value)
            except ValueError as exc:
                raise SettingError(f"{key}: {exc}") from None
        elif key.startswith("HUB_") and key not in known and not key.startswith("HUB_MODEL_"):
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            notices.append(f"{key} is not a setting and is ignored{hint}; python hub.py --help lists them")
    return notices


def config_from(flags: Mapping[str, Any], model_pairs: list[str], environ: Mapping[str, str]) -> HubConfig:
    """The whole configuration from parsed flags and the environment (pure apart
    from checking that model folders exist); raises SettingError."""
    v = resolve(flags, environ)
    notices = environment_notices(environ)
    given_start = flags.get("start_method") is not None or bool(environ.get("HUB_START_METHOD"))
    backend, notice = mechanism(v["backend"], v["start_method"], given_start)
    if v["reload"] and backend == "ray":
        raise SettingError("--reload works with local workers only: a Ray Serve application is not "
                           "redeployed when its code changes; drop --reload, or use --backend local "
                           "while developing a demo")
    if v["reload"] and environ.get("SPACE_ID"):
        raise SettingError("--reload is for a demo author's own machine: it shows tracebacks on the page "
                           "and restarts on file changes; remove HUB_RELOAD from this Space's variables")
    by_dest = {s.dest: s for s in SETTINGS}
    given = {dest: flags.get(dest) is not None or bool(by_dest[dest].env and environ.get(by_dest[dest].env))
             for dest in ONLY_FOR}
    notices += unused_settings(backend, given)
    if v["reload"] and v["mcp"]:
        notices.append("--mcp with --reload: the MCP tools are the demos found at start; a demo added or "
                       "whose page changed is served on the page at once, to MCP clients after a restart")
    limits = Limits(
        max_models=v["max_models"],
        memory_budget=v["memory_budget"],
        idle_ttl_s=v["idle_ttl"] or None,
        memory_metric=v["memory_metric"],
        capacity_wait_s=v["capacity_wait"],
        worker_threads=v["worker_threads"] or None,
        eviction=v["eviction"],
    )
    models, model_settings = parse_model_overrides(model_pairs, environ)
    return HubConfig(
        host=v["host"],
        port=v["port"],
        demos_dir=v["demos_dir"],
        models_dir=v["models_dir"],
        cache_dir=v["cache_dir"],
        limits=limits,
        models=models,
        model_settings=model_settings,
        only=tuple(n.strip() for n in v["only"].split(",") if n.strip()),
        queue_size=v["queue_size"],
        queue_rest_after_s=v["queue_rest_after"],
        status_every_s=v["status_every"],
        mcp=bool(v["mcp"]),
        backend=backend,
        backend_options=_backend_options(backend, v, limits),
        door=DoorSettings(
            max_file_size=v["max_file_size"],
            max_body=v["max_body"],
            api_docs=bool(v["api_docs"]),
            temp_ttl_s=v["temp_ttl"],
            sessions=v["sessions"],
            per_client_queue=v["per_client_queue"],
            forwarded_allow_ips=v["forwarded_allow_ips"],
        ),
        notices=tuple(notices) + ((notice,) if notice else ()),
        device=v["device"],
        reload=bool(v["reload"]),
    )


def load_config(argv: list[str] | None = None) -> HubConfig:
    """Parse flags and HUB_* variables; a bad value ends the process the way
    argparse does (usage, `hub.py: error: <setting>: <what is wrong>`, exit 2)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    flags = vars(args)
    try:
        config = config_from(flags, flags.pop("model"), os.environ)
    except SettingError as exc:
        parser.error(str(exc))
    if config.device:  # workers inherit it; demohub.device reads it (one setting, every backend)
        os.environ["HUB_DEVICE"] = config.device
    if config.reload:  # a forked worker reads it: import the demo's modules fresh (backends/local/worker.py)
        os.environ["HUB_RELOAD"] = "1"
    return config


def warn(message: str) -> None:
    """A sentence for the operator that does not stop the hub, in argparse's style."""
    print(f"hub.py: warning: {message}", file=sys.stderr, flush=True)


def fail(message: str) -> int:
    """A setting that cannot work, found after parsing (it needed the demos or the
    cache): argparse's style and exit status, without the usage block."""
    print(f"hub.py: error: {message}", file=sys.stderr, flush=True)
    return 2
