"""The import rules the folder layout promises (README, "How it fits together").

Dependencies point one way: the web front (`demohub/web/`) asks the registry; the
registry drives a backend (`demohub/backends/`); a backend runs a demo's runtime.
Read from the source (every `import`, also inside functions), so a rule broken
by a lazy import fails here too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "tensorflow", "keras", "faiss", "tokenizers", "transformers")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module `path` imports, absolute or relative, top-level or lazy."""
    found: set[str] = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def sources(*globs: str) -> list[Path]:
    return sorted({p for g in globs for p in ROOT.glob(g) if "__pycache__" not in p.parts})


def breaking(paths: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    return [f"{p.relative_to(ROOT)} imports {m}" for p in paths for m in sorted(imports(p))
            if any(m == f or m.startswith(f + ".") for f in forbidden)]


CORE = ["demohub/*.py", "demohub/backends/**/*.py", "demohub/kit/*.py"]
WORKER_SIDE = ["demohub/backends/local/worker.py", "demohub/backends/local/template_main.py",
               "demohub/backends/ray/replica.py", "demohub/contract.py", "demohub/kit/*.py"]


@pytest.mark.parametrize("who, globs, forbidden", [
    ("the core (policy, registry, backends, kit) never imports the web front", CORE, ("demohub.web",)),
    ("worker-side modules never import the web front or the registry", WORKER_SIDE,
     ("demohub.web", "demohub.registry", "demohub.policy")),
    ("the policy imports nothing of the hub: it is pure decisions", ["demohub/policy.py"], ("demohub",)),
    ("the author's kit imports no framework: the hub imports it", ["demohub/kit/*.py"], HEAVY),
    ("the web front never reaches past the registry into a backend", ["demohub/web/*.py"],
     ("demohub.backends",)),
])
def test_import_rules(who, globs, forbidden):
    paths = sources(*globs)
    assert paths, f"no files for {globs}: was the layout changed without this test?"
    assert breaking(paths, forbidden) == [], who


def test_a_demo_uses_only_the_authors_contract_of_the_hub():
    """A demo imports the contract (spec, contract, errors, device, kit), never the
    hub's inside (registry, backends, web front): that is what may change under it."""
    inside = ("demohub.registry", "demohub.policy", "demohub.backends", "demohub.web", "demohub.sources",
              "demohub.config", "demohub.discovery")
    assert breaking(sources("demos/**/*.py"), inside) == []


def test_a_demo_never_imports_another_demo():
    demos = [p.name for p in (ROOT / "demos").iterdir() if (p / "__init__.py").is_file()]
    assert len(demos) >= 4
    found = []
    for name in demos:
        others = tuple(f"demos.{d}" for d in demos if d != name)
        found += breaking(sources(f"demos/{name}/**/*.py"), others)
    assert found == []


def test_the_rule_checker_sees_lazy_and_relative_imports(tmp_path, monkeypatch):
    """The checker itself: an import inside a function and a relative one both count."""
    pkg = tmp_path / "demohub" / "backends"
    pkg.mkdir(parents=True)
    (pkg / "bad.py").write_text("def f():\n    from ..web import app\n    import torch\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert breaking([pkg / "bad.py"], ("demohub.web", "torch")) == [
        "demohub/backends/bad.py imports demohub.web", "demohub/backends/bad.py imports demohub.web.app",
        "demohub/backends/bad.py imports torch"]


def test_the_hub_process_imports_no_framework():
    """Everything the hub process imports (every backend, the page of every demo,
    the MCP server's parts) leaves torch, TensorFlow, faiss and tokenizers out."""
    code = ("import sys, runpy; from pathlib import Path\n"
            "import hub, demohub.registry, demohub.policy, demohub.backends\n"
            "import demohub.backends.local.spawn, demohub.backends.local.template, demohub.backends.local.copies\n"
            "import demohub.backends.ray.backend, demohub.web.app, demohub.web.ui, demohub.web.status_tab\n"
            "from demohub.discovery import discover\n"
            "import importlib\n"
            "for spec in discover(Path('demos')): importlib.import_module(spec.tab)\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
