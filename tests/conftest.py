import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "tests", ROOT / "tests" / "fixtures"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def demo_hub():
    """The real demos as shipped, in one hub shared by the API and browser tests:
    questions trained, cassava and durian as placeholders (kept under .cache/ so
    reruns skip rebuilding them)."""
    from support import running_hub

    # --per-client-queue 0: here one address stands for many visitors (tests/test_fair.py tests the limit)
    with running_hub("--max-models", "3", "--per-client-queue", "0", cache_dir=ROOT / ".cache" / "test-hub") as server:
        yield server


@pytest.fixture
def no_blocking_under_locks(monkeypatch):
    """Fail the test if any blocking call ran while a coordinating lock was held
    (tests/lockcheck.py); used by the registry and backend suites."""
    from lockcheck import Harness

    harness = Harness()
    harness.install(monkeypatch)
    yield harness
    unique = list(dict.fromkeys(harness.violations))
    assert not unique, f"{len(unique)} blocking call(s) under a coordinating lock:\n\n" + "\n\n".join(unique[:5])
