"""Hub settings from command-line flags, with environment variables as defaults
(so a Space or a Dockerfile can configure the hub without changing its command)."""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from demohub.backends import usable_cores
from demohub.backends.spawn import PROJECT_ROOT
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


@dataclass(frozen=True)
class DoorSettings:
    """What the HTTP door accepts and how long the hub keeps temp files."""

    max_file_size: int = 20 * 2**20
    max_body: int = 2**20
    api_docs: bool = False
    temp_ttl_s: float = 300.0
    #: sessions whose Gradio state is kept; each holds at most one request's inputs
    sessions: int = 16


@dataclass(frozen=True)
class HubConfig:
    host: str = "127.0.0.1"
    port: int = 7860
    demos_dir: Path = PROJECT_ROOT / "demos"
    models_dir: Path = PROJECT_ROOT / "models"
    cache_dir: Path = PROJECT_ROOT / ".cache"
    limits: Limits = Limits()
    models: dict[str, ModelSource] = field(default_factory=dict)
    only: tuple[str, ...] = ()
    queue_size: int = 32
    #: seconds without a request after which Gradio's queue polls slower (demohub.pacing); 0: never
    queue_rest_after_s: float = 10.0
    mcp: bool = False
    #: how models run: "spawn" (a process each), "template" or "ray" (Ray Serve)
    backend: str = "spawn"
    backend_options: dict = field(default_factory=dict)
    door: DoorSettings = field(default_factory=DoorSettings)

    @property
    def placeholder_dir(self) -> Path:
        return self.cache_dir / "placeholders"


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"HUB_{name}", default)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hub.py", description="Serve every demo under demos/ in one Gradio app."
    )
    p.add_argument("--host", default=_env("HOST", "127.0.0.1"),
                   help="interface to bind (HUB_HOST; 0.0.0.0 in a container)")
    p.add_argument("--port", type=int, default=int(_env("PORT", "7860")), help="HUB_PORT")
    p.add_argument("--demos-dir", type=Path, default=Path(_env("DEMOS_DIR", str(PROJECT_ROOT / "demos"))))
    p.add_argument("--models-dir", type=Path, default=Path(_env("MODELS_DIR", str(PROJECT_ROOT / "models"))))
    p.add_argument("--cache-dir", type=Path, default=Path(_env("CACHE_DIR", str(PROJECT_ROOT / ".cache"))),
                   help="placeholder model folders, and what runtimes derive from model folders "
                        "(e.g. durian's traced graph) for the next worker (HUB_CACHE_DIR)")
    p.add_argument("--max-models", type=int, default=int(_env("MAX_MODELS", "3")),
                   help="most models loaded at once (HUB_MAX_MODELS)")
    p.add_argument("--memory-budget", default=_env("MEMORY_BUDGET"),
                   help="memory budget for all workers, e.g. 6G (HUB_MEMORY_BUDGET; default none)")
    p.add_argument("--memory-metric", choices=MEMORY_METRICS, default=_env("MEMORY_METRIC", "pss"),
                   help="how worker memory is measured (HUB_MEMORY_METRIC)")
    p.add_argument("--idle-ttl", type=float, default=float(_env("IDLE_TTL", "900")),
                   help="seconds an idle model stays loaded; 0 keeps it forever (HUB_IDLE_TTL)")
    p.add_argument("--capacity-wait", type=float, default=float(_env("CAPACITY_WAIT", "30")),
                   help="seconds a load waits for room before 'hub is at capacity'")
    p.add_argument("--worker-threads", type=int, default=int(_env("WORKER_THREADS", "0")) or None,
                   help="CPU threads per worker (default: all cores)")
    p.add_argument("--max-copies", type=int, default=int(_env("MAX_COPIES", "0")) or None,
                   help="most worker processes of one model when its requests pile up: a copy is added "
                        "while every copy is busy and the memory budget has room, and ends after a minute "
                        "it is not needed (HUB_MAX_COPIES; default: the machine's cores, at most 4, with "
                        "--start-method template, 1 with spawn; 1: one process per model; a demo's "
                        "SPEC.max_copies can lower it)")
    p.add_argument("--model", action="append", default=[], metavar="NAME=SOURCE",
                   help="model source override: cassava=org/repo@rev or cassava=/path/to/folder "
                        "(also HUB_MODEL_<NAME>)")
    p.add_argument("--only", default=_env("ONLY", ""),
                   help="comma-separated demo names to serve (default: all)")
    p.add_argument("--queue-size", type=int, default=int(_env("QUEUE_SIZE", "32")),
                   help="requests waiting per hub before 'busy, try again' (HUB_QUEUE_SIZE)")
    p.add_argument("--queue-rest-after", type=float, default=float(_env("QUEUE_REST_AFTER", "10")),
                   help="seconds without a request after which Gradio's queue polls every 5 ms instead "
                        "of every 1 ms, so an idle hub costs ~1 %% of a core, not ~3 %%; the next request "
                        "wakes it (HUB_QUEUE_REST_AFTER; 0: never rest)")
    p.add_argument("--mcp", action="store_true", default=_env("MCP", "") == "1",
                   help="also serve every demo as an MCP tool (needs gradio[mcp])")
    p.add_argument("--backend", choices=("spawn", "template", "ray"), default=_env("BACKEND", "spawn"),
                   help="how models run: a process each (spawn), or Ray Serve deployments (ray) "
                        "(HUB_BACKEND)")
    p.add_argument("--start-method", choices=("spawn", "template"), default=_env("START_METHOD", "template"),
                   help="how a local worker starts: forked from a per-framework template that has "
                        "imported the framework (template, the default: less memory, faster loads; "
                        "docs/benchmarks.md), or a fresh interpreter (spawn) (HUB_START_METHOD)")
    p.add_argument("--template-ttl", type=float, default=float(_env("TEMPLATE_TTL", "-1")),
                   help="seconds a template with no model stays up; 0 keeps it (HUB_TEMPLATE_TTL; "
                        "default: --idle-ttl)")
    p.add_argument("--prewarm", action="store_true", default=_env("PREWARM", "") == "1",
                   help="start the framework templates at startup, not on first use (HUB_PREWARM=1)")
    p.add_argument("--ray-address", default=os.environ.get("RAY_ADDRESS") or None,
                   help="Ray cluster to deploy to, e.g. ray://head:10001 (RAY_ADDRESS; default: "
                        "start a one-node Ray on 127.0.0.1)")
    p.add_argument("--ray-max-replicas", type=int, default=int(_env("RAY_MAX_REPLICAS", "1")),
                   help="most Ray Serve replicas per demo (HUB_RAY_MAX_REPLICAS)")
    p.add_argument("--ray-app-prefix", type=ray_app_prefix, default=_env("RAY_APP_PREFIX", "demohub-"),
                   help="prefix of this hub's Serve application names, so two hubs can share a cluster "
                        "(HUB_RAY_APP_PREFIX; default demohub-)")
    p.add_argument("--ray-connect-timeout", type=float, default=float(_env("RAY_CONNECT_TIMEOUT", "90")),
                   help="seconds to wait for the Ray cluster to accept the hub as a driver before giving "
                        "up with an error (HUB_RAY_CONNECT_TIMEOUT)")
    p.add_argument("--device", default=_env("DEVICE"),
                   help="auto, cpu, cuda or cuda:N for every demo's worker (HUB_DEVICE; default: each "
                        "demo's SPEC.device, normally auto); HUB_DEVICE_<NAME>=cpu overrides one demo")
    p.add_argument("--max-file-size", default=_env("MAX_FILE_SIZE", "20M"),
                   help="largest upload accepted, e.g. 20M (HUB_MAX_FILE_SIZE)")
    p.add_argument("--max-body", default=_env("MAX_BODY", "1M"),
                   help="largest request body on every route except uploads (HUB_MAX_BODY)")
    p.add_argument("--api-docs", action="store_true", default=_env("API_DOCS", "") == "1",
                   help="serve /docs, /redoc, /openapi.json and the run history (HUB_API_DOCS=1)")
    p.add_argument("--temp-ttl", type=float, default=float(_env("TEMP_TTL", "300")),
                   help="seconds uploads and generated images stay in the temp folder (HUB_TEMP_TTL)")
    p.add_argument("--sessions", type=int, default=int(_env("SESSIONS", "16")),
                   help="browser/client sessions whose Gradio state is kept in memory (HUB_SESSIONS)")
    return p


def parse_model_overrides(pairs: list[str], environ: dict[str, str]) -> dict[str, ModelSource]:
    overrides = {}
    for key, value in environ.items():
        if key.startswith("HUB_MODEL_") and value:
            overrides[key[len("HUB_MODEL_"):].lower()] = ModelSource.parse(value)
    for pair in pairs:
        name, sep, source = pair.partition("=")
        if not sep:
            raise ValueError(f"--model expects NAME=SOURCE, got {pair!r}")
        overrides[name.strip()] = ModelSource.parse(source)
    return overrides


def _backend_name(args: argparse.Namespace) -> str:
    """--backend ray, or the local start method (--start-method, or --backend template)."""
    if args.backend == "spawn" and args.start_method == "template":
        return "template"
    return args.backend


def default_copies(start_method: str) -> int:
    """With templates, one copy per core (a CPU-bound call uses about one), at most 4.
    A spawned copy imports its framework again (seconds of CPU, hundreds of MB): one
    (docs/benchmarks.md, "copies of a busy model")."""
    if start_method != "template":
        return 1
    return max(1, min(4, usable_cores()))


def _backend_options(args: argparse.Namespace, limits: Limits) -> dict:
    copies = max(1, args.max_copies or default_copies(_backend_name(args)))
    if _backend_name(args) == "template":
        ttl = limits.idle_ttl_s if args.template_ttl < 0 else (args.template_ttl or None)
        return {"threads": limits.worker_threads, "template_ttl_s": ttl, "prewarm": args.prewarm,
                "max_copies": copies}
    if args.backend != "ray":
        return {"threads": limits.worker_threads, "max_copies": copies}
    return {"address": args.ray_address, "max_replicas": max(1, args.ray_max_replicas),
            "idle_ttl_s": limits.idle_ttl_s, "threads": limits.worker_threads,
            # a Ray this hub starts itself offers the memory budget as its `memory` resource
            "local_memory_bytes": limits.memory_budget, "max_models": limits.max_models,
            "connect_timeout_s": max(1.0, args.ray_connect_timeout),
            "app_prefix": args.ray_app_prefix}


def ray_app_prefix(value: str) -> str:
    """argparse type for --ray-app-prefix: a Serve application name must be plain."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", value):
        raise argparse.ArgumentTypeError(f"{value!r}: use letters, digits, '-' and '_', e.g. team-a-")
    return value


def load_config(argv: list[str] | None = None) -> HubConfig:
    args = build_parser().parse_args(argv)
    if args.device:  # workers inherit it; demohub.device reads it (one setting, every backend)
        os.environ["HUB_DEVICE"] = validate_device(args.device, "--device")
    ttl = args.idle_ttl if args.idle_ttl > 0 else None
    limits = Limits(
        max_models=args.max_models,
        memory_budget=parse_size(args.memory_budget) if args.memory_budget else None,
        idle_ttl_s=ttl,
        memory_metric=args.memory_metric,
        capacity_wait_s=args.capacity_wait,
        worker_threads=args.worker_threads,
    )
    return HubConfig(
        host=args.host,
        port=args.port,
        demos_dir=args.demos_dir.resolve(),
        models_dir=args.models_dir.resolve(),
        cache_dir=args.cache_dir.resolve(),
        limits=limits,
        models=parse_model_overrides(args.model, dict(os.environ)),
        only=tuple(n.strip() for n in args.only.split(",") if n.strip()),
        queue_size=args.queue_size,
        queue_rest_after_s=max(0.0, args.queue_rest_after),
        mcp=args.mcp,
        backend=_backend_name(args),
        backend_options=_backend_options(args, limits),
        door=DoorSettings(
            max_file_size=parse_size(args.max_file_size),
            max_body=parse_size(args.max_body),
            api_docs=args.api_docs,
            temp_ttl_s=max(1.0, args.temp_ttl),
            sessions=max(1, args.sessions),
        ),
    )
