"""The author's loop (`--reload`, `make dev`): which saved file changes what.

`classify_changes` is the decision, a pure function over the changed paths and
what the hub knows of each demo's files; `Watcher` is the mechanism, one thread
around `watchfiles.watch` with a short debounce, so an editor's save-and-rename
counts once and a save reaches the hub in about a tenth of a second (watchfiles'
default debounce of 1.6 s alone would eat the time budget of issue 28).

What a change means:
- a demo's runtime side (its `runtime.py`, any other module of its package): that
  demo's handle ends after its running call; the next request loads the new code
  (a module the tab imports too also rebuilds the page: which side imports a helper
  is not read from the code, so both reload);
- its page side (`tab.py`, files that are not Python, e.g. examples): the page is
  rebuilt in the running hub process, no model reloads;
- its `__init__.py` (the SPEC): both, since the SPEC names the runtime and its limits;
- its local model folder: that model reloads on its next request;
- a new folder under the demos folder: the page is rebuilt with it; a deleted
  demo: the page is rebuilt without it and its handle ends;
- `demohub/kit/` (used by runtimes and tabs alike): every runtime and the page;
- the rest of `demohub/`: the hub process restarts, as `uvicorn --reload` does.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence, Union

from demohub import PROJECT_ROOT, events

HUB_DIR = PROJECT_ROOT / "demohub"
KIT_DIR = HUB_DIR / "kit"

#: ms watchfiles waits for more changes before yielding a batch (its `step`), and at most (its `debounce`)
STEP_MS = 20
DEBOUNCE_MS = 100


@dataclass(frozen=True)
class DemoFiles:
    """What the hub knows of one demo's files, to tell what a change touches."""

    name: str
    folder: Path
    #: the file of the module SPEC.runtime names (it may live outside the folder)
    runtime_file: Path | None = None
    #: modules of the demo the hub process itself has imported (tab.py and what it imports)
    page_files: frozenset[Path] = frozenset()
    #: its local model folder, if it loads from one (a pinned Hub snapshot is not watched)
    model_dir: Path | None = None


@dataclass(frozen=True)
class ReloadRuntime:
    """End `name`'s handle after its running call; the next request loads anew."""

    name: str
    why: str


@dataclass(frozen=True)
class RebuildPage:
    """Rebuild the page (and rediscover the demos) in the running hub process;
    `show`: the demo whose page changed, the tab to show."""

    why: str
    show: str | None = None
    #: the author's kit changed: the hub imports it afresh too (not otherwise: the results the
    #: workers send are of its classes, and a request answered during a rebuild must find the
    #: classes its page checks for)
    kit: bool = False


@dataclass(frozen=True)
class Restart:
    """Restart the hub process: its own code changed."""

    why: str


Action = Union[ReloadRuntime, RebuildPage, Restart]


def _under(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def classify_changes(changes: Iterable[tuple[str, Path]], demos: Sequence[DemoFiles], demos_dir: Path,
                     hub_dir: Path = HUB_DIR) -> list[Action]:
    """The actions a batch of file changes calls for, each once, in a stable order.

    `changes` are (kind, path) with kind "added", "modified" or "deleted" and
    absolute paths. Pure: no file is read, so it is tested as a table."""
    kit_dir = hub_dir / "kit"
    runtime: dict[str, str] = {}
    page: list[tuple[str, str | None]] = []
    restart: list[str] = []

    def reload(name: str, why: str) -> None:
        runtime.setdefault(name, why)

    changes = set(changes)
    for kind, path in sorted(changes, key=lambda c: (str(c[1]), c[0])):
        rel = path.name
        if _under(path, kit_dir):
            for demo in demos:
                reload(demo.name, f"the author's kit changed ({path.relative_to(hub_dir.parent)})")
            page.append((f"the author's kit changed ({path.relative_to(hub_dir.parent)})", None))
            continue
        if _under(path, hub_dir):
            if path.suffix == ".py":
                restart.append(f"the hub's own code changed ({path.relative_to(hub_dir.parent)})")
            continue
        owners = [d for d in demos if d.runtime_file == path and not _under(path, d.folder)]
        for demo in owners:  # a runtime module shared from outside the demo's folder
            reload(demo.name, f"its runtime {rel} was {kind}")
        for demo in demos:
            if demo.model_dir is not None and _under(path, demo.model_dir):
                reload(demo.name, f"its model folder changed ({rel} {kind})")
        demo = next((d for d in demos if _under(path, d.folder)), None)
        if demo is None:
            if _under(path, demos_dir) and path != demos_dir and not owners:
                top = path.relative_to(demos_dir).parts[0]  # a new demo? rediscovery decides
                page.append((f"{demos_dir.name}/{top} was {kind}", top))
            continue
        if path == demo.folder or (path == demo.folder / "__init__.py" and kind == "deleted"):
            page.append((f"{demo.name} was removed", None) if kind == "deleted"
                        else (f"{demo.name}'s folder changed", demo.name))
            continue
        if path.suffix != ".py":
            page.append((f"{demo.name}: {rel} was {kind}", demo.name))
            continue
        if path == demo.folder / "__init__.py":
            reload(demo.name, f"its SPEC ({rel}) was {kind}")
            page.append((f"{demo.name}: its SPEC ({rel}) was {kind}", demo.name))
            continue
        if path in demo.page_files and path != demo.runtime_file:
            page.append((f"{demo.name}: {rel} was {kind}", demo.name))
            if path.name == "tab.py":
                continue
        reload(demo.name, f"{rel} was {kind}")
    if restart:
        return [Restart(restart[0])]
    actions: list[Action] = [ReloadRuntime(name, why) for name, why in sorted(runtime.items())]
    if page:
        kit = any(_under(path, kit_dir) for _, path in changes)
        actions.append(RebuildPage(page[0][0], next((name for _, name in page if name), None), kit=kit))
    return actions


def demo_files(demos_dir: Path, specs: Sequence[object], model_dirs: dict[str, Path | None]) -> list[DemoFiles]:
    """What the hub knows now of each demo's files (reads sys.modules and the
    import system's specs, never imports a runtime)."""
    out = []
    demos_dir = demos_dir.resolve()
    package = demos_dir.name  # only the demos' own modules: resolving every loaded module's path is slow
    loaded = {name: Path(m.__file__).resolve() for name, m in list(sys.modules.items())
              if (name == package or name.startswith(package + ".")) and getattr(m, "__file__", None)}
    for spec in specs:
        package = spec.tab.rpartition(".")[0]  # type: ignore[attr-defined]
        folder = demos_dir / package.rpartition(".")[2] if package.startswith(demos_dir.name + ".") else None
        module_folder = loaded.get(package)
        if module_folder is not None:
            folder = module_folder.parent
        if folder is None:
            continue
        try:
            found = importlib.util.find_spec(spec.runtime)  # type: ignore[attr-defined]
            runtime_file = Path(found.origin).resolve() if found and found.origin else None
        except (ImportError, ValueError):
            runtime_file = None
        page = frozenset(f for f in loaded.values() if _under(f, folder))
        out.append(DemoFiles(spec.name, folder, runtime_file, page,  # type: ignore[attr-defined]
                             model_dirs.get(spec.name)))  # type: ignore[attr-defined]
    return out


def drop_stale_bytecode(paths: Iterable[Path]) -> None:
    """Remove the cached bytecode of changed sources. Python checks a .pyc against
    its source's mtime in whole seconds and its size, so a save of the same length
    within the second of the last import would otherwise run the old code."""
    for path in paths:
        if path.suffix != ".py":
            continue
        for cached in (path.parent / "__pycache__").glob(f"{path.stem}.*.pyc"):
            cached.unlink(missing_ok=True)


def settled(changes: Iterable[tuple[str, Path]]) -> list[tuple[str, Path]]:
    """The changes less the files that came and went within the batch: an editor's
    or a tool's temporary (`sed -i`, vim's 4913) is no change to the demo."""
    changes = list(changes)
    added = {p for k, p in changes if k == "added"}
    return [(k, p) for k, p in changes if not (p in added and not p.exists())]


def forget_modules(prefixes: Iterable[str]) -> list[str]:
    """Drop modules (and their submodules) from sys.modules so the next import
    reads the files again; returns the names dropped."""
    prefixes = tuple(prefixes)
    gone = [name for name in list(sys.modules)
            if any(name == p or name.startswith(p + ".") for p in prefixes)]
    for name in gone:
        sys.modules.pop(name, None)
    importlib.invalidate_caches()  # a folder's listing is cached by its mtime, also coarse
    return gone


#: watchfiles' names for its Change values
_KINDS = {1: "added", 2: "modified", 3: "deleted"}


class Watcher:
    """One thread around `watchfiles.watch` (owner: the hub, which calls `close`).

    Every wait is bounded: the watch checks its stop event every STEP_MS, and a
    batch is handed to `on_changes` in this thread, so batches never overlap."""

    def __init__(self, paths: Sequence[Path], on_changes: Callable[[list[tuple[str, Path]]], None]):
        self.paths = [p for p in paths if p.exists()]
        self._on_changes = on_changes
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="reload-watcher")

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        import watchfiles

        logging.getLogger("watchfiles").setLevel(logging.WARNING)  # its "N changes detected" per batch
        while not self._stop.is_set():
            try:
                for batch in watchfiles.watch(*self.paths, debounce=DEBOUNCE_MS, step=STEP_MS,
                                              stop_event=self._stop, rust_timeout=1000, yield_on_timeout=False,
                                              raise_interrupt=False):
                    changes = [(_KINDS.get(int(kind), "modified"), Path(path)) for kind, path in batch]
                    try:
                        self._on_changes(changes)
                    except Exception as exc:  # noqa: BLE001 - the loop survives a failed reload
                        logging.getLogger(__name__).exception("reload failed")
                        events.event("reload_error", error=f"{type(exc).__name__}: {exc}")
            except Exception as exc:  # noqa: BLE001 - e.g. a watched folder removed: watch again
                events.event("reload_error", error=f"watching stopped: {type(exc).__name__}: {exc}")
                self._stop.wait(1.0)
                self.paths = [p for p in self.paths if p.exists()]
