"""What a saved file reloads (--reload, issue 28): `classify_changes` as a table,
no process, no file read."""

from __future__ import annotations

from pathlib import Path

import pytest

from demohub.config import SettingError, config_from
from demohub.reload import DemoFiles, RebuildPage, ReloadRuntime, Restart, classify_changes, settled

HUB = Path("/repo/demohub")
DEMOS = Path("/repo/demos")
CASSAVA = DEMOS / "cassava"
SHARED = Path("/repo/tests/fixtures/testdemos/echo_runtime.py")
KNOWN = [
    DemoFiles("cassava", CASSAVA, CASSAVA / "runtime.py",
              frozenset({CASSAVA / "__init__.py", CASSAVA / "tab.py", CASSAVA / "heatmap_view.py"}),
              model_dir=Path("/repo/models/cassava")),
    DemoFiles("questions", DEMOS / "questions", DEMOS / "questions" / "runtime.py",
              frozenset({DEMOS / "questions" / "__init__.py", DEMOS / "questions" / "tab.py"})),
    # two demos sharing a runtime module outside their folders (the test demos do)
    DemoFiles("alpha", DEMOS / "alpha", SHARED, frozenset({DEMOS / "alpha" / "__init__.py"})),
    DemoFiles("beta", DEMOS / "beta", SHARED, frozenset({DEMOS / "beta" / "__init__.py"})),
]


def kinds(actions):
    return [(type(a).__name__, getattr(a, "name", None)) for a in actions]


@pytest.mark.parametrize("changes, expected", [
    # the runtime side: that demo only, no page rebuild
    ([("modified", CASSAVA / "runtime.py")], [("ReloadRuntime", "cassava")]),
    ([("modified", CASSAVA / "model.py")], [("ReloadRuntime", "cassava")]),  # a module the runtime imports
    # the page side: no model reloads
    ([("modified", CASSAVA / "tab.py")], [("RebuildPage", None)]),
    ([("added", CASSAVA / "examples" / "leaf.jpg")], [("RebuildPage", None)]),
    # the SPEC names the runtime and its limits: both
    ([("modified", CASSAVA / "__init__.py")], [("ReloadRuntime", "cassava"), ("RebuildPage", None)]),
    # a helper the tab imports (so the hub has it loaded): which side uses it is not read, both reload
    ([("modified", CASSAVA / "heatmap_view.py")], [("ReloadRuntime", "cassava"), ("RebuildPage", None)]),
    # the model folder: that model reloads on its next request
    ([("added", Path("/repo/models/cassava/model.safetensors"))], [("ReloadRuntime", "cassava")]),
    # a runtime module outside the folders: every demo that runs it
    ([("modified", SHARED)], [("ReloadRuntime", "alpha"), ("ReloadRuntime", "beta")]),
    # a new folder, a deleted demo: the page (rediscovery decides what is a demo)
    ([("added", DEMOS / "durian" / "__init__.py"), ("added", DEMOS / "durian" / "tab.py")],
     [("RebuildPage", None)]),
    ([("deleted", DEMOS / "questions")], [("RebuildPage", None)]),
    ([("deleted", DEMOS / "questions" / "__init__.py")], [("RebuildPage", None)]),
    # the author's kit: every runtime and the page
    ([("modified", HUB / "kit" / "images.py")],
     [("ReloadRuntime", "alpha"), ("ReloadRuntime", "beta"), ("ReloadRuntime", "cassava"),
      ("ReloadRuntime", "questions"), ("RebuildPage", None)]),
    # the hub's own code: a restart, whatever else changed with it
    ([("modified", HUB / "registry.py"), ("modified", CASSAVA / "runtime.py")], [("Restart", None)]),
    ([("modified", HUB / "web" / "ui.py")], [("Restart", None)]),
    ([("modified", HUB / "notes.txt")], []),  # not code
    # several at once: each action once, in a stable order
    ([("modified", CASSAVA / "runtime.py"), ("modified", CASSAVA / "model.py"),
      ("modified", DEMOS / "questions" / "tab.py"), ("modified", CASSAVA / "tab.py")],
     [("ReloadRuntime", "cassava"), ("RebuildPage", None)]),
    ([("modified", Path("/elsewhere/file.py"))], []),
])
def test_what_a_saved_file_reloads(changes, expected):
    assert kinds(classify_changes(changes, KNOWN, DEMOS, hub_dir=HUB)) == expected


def test_the_actions_say_why():
    runtime, page = classify_changes([("modified", CASSAVA / "__init__.py")], KNOWN, DEMOS, hub_dir=HUB)
    assert runtime == ReloadRuntime("cassava", "its SPEC (__init__.py) was modified")
    assert isinstance(page, RebuildPage) and "cassava" in page.why and page.show == "cassava"
    (new,) = classify_changes([("added", DEMOS / "durian" / "tab.py")], KNOWN, DEMOS, hub_dir=HUB)
    assert new == RebuildPage("demos/durian was added", show="durian")  # the new tab is shown
    (gone,) = classify_changes([("deleted", DEMOS / "questions")], KNOWN, DEMOS, hub_dir=HUB)
    assert gone == RebuildPage("questions was removed", show=None)
    *_, page = classify_changes([("modified", HUB / "kit" / "photo.py")], KNOWN, DEMOS, hub_dir=HUB)
    assert page.kit and not new.kit  # the hub imports the kit afresh only when it changed
    (restart,) = classify_changes([("modified", HUB / "registry.py")], KNOWN, DEMOS, hub_dir=HUB)
    assert restart == Restart("the hub's own code changed (demohub/registry.py)")


def test_a_file_that_came_and_went_in_one_batch_is_no_change(tmp_path):
    kept = tmp_path / "runtime.py"
    kept.write_text("x = 1\n")
    batch = [("added", tmp_path / "sedAbc123"), ("deleted", tmp_path / "sedAbc123"),
             ("deleted", kept), ("added", kept)]  # vim: the old file moved away, the new one written
    assert sorted(settled(batch)) == [("added", kept), ("deleted", kept)]


@pytest.mark.parametrize("flags, environ, says", [
    ({"reload": True, "backend": "ray"}, {}, "--reload works with local workers only"),
    ({}, {"HUB_RELOAD": "1", "HUB_BACKEND": "ray"}, "--reload works with local workers only"),
    ({}, {"HUB_RELOAD": "1", "SPACE_ID": "someone/demo-hub"}, "remove HUB_RELOAD from this Space"),
])
def test_reload_is_refused_where_it_cannot_work(flags, environ, says):
    with pytest.raises(SettingError, match=says):
        config_from(flags, [], environ)


def test_reload_with_mcp_says_what_mcp_clients_see():
    notices = config_from({"reload": True, "mcp": True}, [], {}).notices
    assert any(n.startswith("--mcp with --reload: the MCP tools are the demos found at start") for n in notices)


def test_reload_is_off_unless_asked_and_never_in_the_image():
    assert config_from({}, [], {}).reload is False
    assert config_from({"reload": True}, [], {}).reload is True
    dockerfile = (Path(__file__).resolve().parents[1] / "Dockerfile").read_text()
    assert "--reload" not in dockerfile and "HUB_RELOAD" not in dockerfile
