"""Find the demos: every package under the demos folder that exports `SPEC`.

Importing a demo package must stay cheap and framework-free (it runs in the
hub process); its model code lives in the module `SPEC.runtime` names.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import sys
import traceback
from pathlib import Path

from demohub.contract import ContractError, check_tab
from demohub.spec import DemoSpec


class DemoError(Exception):
    """A demo folder breaks the contract (no SPEC, duplicate name...)."""


def discover(demos_dir: Path, only: tuple[str, ...] = ()) -> list[DemoSpec]:
    """Specs of the demos in `demos_dir`, sorted by name (a stable tab order)."""
    specs, broken = discover_all(demos_dir, only, keep_going=False)
    return specs


def discover_all(demos_dir: Path, only: tuple[str, ...] = (), keep_going: bool = True
                 ) -> tuple[list[DemoSpec], dict[str, str]]:
    """The demos' specs, and (with `keep_going`, --reload) each broken folder's
    name with the traceback of what broke it, so its tab can show it while the
    others serve. Without `keep_going` the first broken folder raises DemoError."""
    demos_dir = demos_dir.resolve()
    if not demos_dir.is_dir():
        raise DemoError(f"no demos folder at {demos_dir}; pass --demos-dir with a folder that holds one "
                        "package per demo")
    root = demos_dir.parent
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    existing = importlib.util.find_spec(demos_dir.name)
    if existing is not None and Path(list(existing.submodule_search_locations or [""])[0]).resolve() != demos_dir:
        raise DemoError(f"the folder name {demos_dir.name!r} clashes with another importable package; "
                        "rename the demos folder")
    specs: dict[str, DemoSpec] = {}
    broken: dict[str, str] = {}
    for folder in sorted(p for p in demos_dir.iterdir() if (p / "__init__.py").is_file()):
        if only and folder.name not in only:
            continue
        try:
            spec = _load_folder(demos_dir, folder)
            if spec.name in specs:
                raise DemoError(f"two demos are named {spec.name!r}; names must be unique")
        except DemoError as exc:
            if not keep_going:
                raise
            broken[folder.name] = f"{exc}\n\n{exc.__cause__ and _trace(exc.__cause__) or ''}".strip()
            continue
        specs[spec.name] = dataclasses.replace(spec, import_root=root)
    missing = set(only) - set(specs) - set(broken)
    if missing:
        raise DemoError(f"no demo named {', '.join(sorted(missing))} under {demos_dir}")
    return sorted(specs.values(), key=lambda s: s.name), broken


def _trace(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


def _load_folder(demos_dir: Path, folder: Path) -> DemoSpec:
    try:
        module = importlib.import_module(f"{demos_dir.name}.{folder.name}")
    except Exception as exc:  # noqa: BLE001 - a broken demo folder is named, not a traceback
        raise DemoError(f"{folder / '__init__.py'} could not be imported: {type(exc).__name__}: {exc}") from exc
    spec = getattr(module, "SPEC", None)
    if not isinstance(spec, DemoSpec):
        raise DemoError(f"{folder} has no SPEC = DemoSpec(...) in its __init__.py")
    _check_tab(folder, spec)
    if spec.max_batch < 1:
        raise DemoError(f"{folder / '__init__.py'}: max_batch must be at least 1, got {spec.max_batch}")
    return spec


def _check_tab(folder: Path, spec: DemoSpec) -> None:
    """Import the tab now (it runs in the hub anyway) so one that breaks the
    contract (no such module, no `build(ctx)`) stops the hub at start with its
    file named. A tab whose own code raises while importing is left to the page,
    which shows that tab as broken and keeps the others serving."""
    try:
        module = importlib.import_module(spec.tab)
    except ModuleNotFoundError as exc:
        if exc.name and (spec.tab == exc.name or spec.tab.startswith(exc.name + ".")):
            raise DemoError(f"{folder / '__init__.py'}: SPEC.tab = {spec.tab!r} names no module "
                            f"({exc})") from exc
        return
    except Exception:  # noqa: BLE001 - the tab's own bug: ui.py logs it and shows the tab as broken
        return
    try:
        check_tab(module)
    except ContractError as exc:
        raise DemoError(str(exc)) from None
