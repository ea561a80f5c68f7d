"""The demo contract is checked early: a tab when the hub discovers it, a
runtime in its worker before it says ready. Each failure names the file and
says what to define; the visitor never sees the traceback."""

from __future__ import annotations

import importlib.util
import json
import pickle
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from gradio_client.exceptions import AppError

from demohub.backends import make_backend
from demohub.backends.local import wire
from demohub.contract import ContractError, Runtime, Tab, check_runtime, check_tab
from demohub.discovery import DemoError, discover
from demohub.errors import ModelError
from demohub.registry import Limits, Registry, State
from demohub.sources import ModelSources
from support import PROJECT_ROOT, running_hub
from test_new_demo import RUNTIME, new_package_dir, write_demo, write_stock_model

ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "browser"

GOOD = """
def load(model_dir): return {}
def predict(model, request, *, trace=False): return request
def placeholder(model_dir): pass
def predict_batch(model, requests): return list(requests)
"""


def module_from(tmp_path, source: str):
    path = tmp_path / f"rt_{uuid.uuid4().hex[:8]}.py"
    path.write_text(textwrap.dedent(source))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, str(path)


def test_a_good_runtime_and_tab_pass_and_match_the_protocols(tmp_path):
    runtime, _ = module_from(tmp_path, GOOD)
    assert check_runtime(runtime) is runtime and isinstance(runtime, Runtime)
    tab, _ = module_from(tmp_path, "def build(ctx): pass\n")
    assert check_tab(tab) is tab and isinstance(tab, Tab)


@pytest.mark.parametrize("source,expected", [
    ("def load(model_dir): return {}\n", r"must define predict\(model, request\)"),
    ("def predict(model, request): pass\n", r"must define load\(model_dir\)"),
    ("load = 3\ndef predict(model, request): pass\n", "load must be a function"),
    ("def load(): pass\ndef predict(model, request): pass\n", r"load\(\) cannot be called as load\(model_dir\)"),
    ("def load(d): pass\ndef predict(model): pass\n", "cannot be called as predict"),
    ("def load(d): pass\ndef predict(m, r): pass\ndef predict_batch(model): pass\n",
     r"predict_batch\(model\) cannot be called as predict_batch\(model, requests\)"),
    ("def load(d): pass\ndef predict(m, r): pass\ndef placeholder(): pass\n", "placeholder"),
])
def test_a_broken_runtime_is_named_with_what_to_define(tmp_path, source, expected):
    runtime, path = module_from(tmp_path, source)
    with pytest.raises(ContractError, match=expected) as caught:
        check_runtime(runtime)
    assert path in str(caught.value)


def test_discovery_refuses_a_tab_without_build_naming_its_file(tmp_path):
    demos = new_package_dir(tmp_path)
    folder = write_demo(demos, "notab", tab="def make(ctx):\n    pass\n")
    with pytest.raises(DemoError, match=r"must define build\(ctx\)") as caught:
        discover(demos)
    assert str(folder / "tab.py") in str(caught.value)


def test_discovery_names_the_spec_whose_tab_cannot_be_imported(tmp_path):
    demos = new_package_dir(tmp_path)
    folder = write_demo(demos, "lost", tab=None)
    with pytest.raises(DemoError, match="names no module") as caught:
        discover(demos)
    assert str(folder / "__init__.py") in str(caught.value) and "lost.tab" in str(caught.value)


def test_a_tab_whose_own_code_fails_is_left_to_the_page(tmp_path):
    """(tests/test_hub_server.py checks the page then shows it as broken and serves the rest.)"""
    demos = new_package_dir(tmp_path)
    write_demo(demos, "explodes", tab="raise RuntimeError('tab exploded')\n")
    write_demo(demos, "needs", tab="import a_package_nobody_installed\n")
    assert [s.name for s in discover(demos)] == ["explodes", "needs"]


def test_discovery_names_a_spec_that_cannot_be_built(tmp_path):
    """A SPEC with a field DemoSpec does not have (e.g. one renamed) stops the hub
    with the file and the reason in one sentence, not an import traceback."""
    demos = new_package_dir(tmp_path)
    folder = write_demo(demos, "stale", extra="concurrency_limit=4,")
    with pytest.raises(DemoError, match="could not be imported: TypeError: .*concurrency_limit") as caught:
        discover(demos)
    assert str(folder / "__init__.py") in str(caught.value)


def test_discovery_refuses_a_zero_batch(tmp_path):
    demos = new_package_dir(tmp_path)
    write_demo(demos, "zero", extra="max_batch=0,")
    with pytest.raises(DemoError, match="max_batch must be at least 1"):
        discover(demos)


def test_a_runtime_without_predict_fails_at_load_in_its_worker_naming_the_file(tmp_path):
    demos = new_package_dir(tmp_path)
    folder = write_demo(demos, "nopredict", runtime="def load(model_dir):\n    return {}\n")
    (tmp_path / "models" / "nopredict").mkdir(parents=True)
    (tmp_path / "models" / "nopredict" / "config.json").write_text(json.dumps({"trained": True}))
    specs = discover(demos)
    registry = Registry(specs, ModelSources(specs, tmp_path / "models", tmp_path / "ph"), Limits(),
                        backend=make_backend("spawn"))
    try:
        with pytest.raises(ModelError) as caught:
            registry.predict("nopredict", {"text": "hi"})
        assert "could not be loaded" in str(caught.value)
        assert "runtime.py" not in str(caught.value)  # the visitor's sentence carries no path...
        status = registry.status()[0]
        assert status.state == State.FAILED
        assert str(folder / "runtime.py") in status.error  # ...the operator's does
        assert "must define predict(model, request)" in status.traceback
        assert "Traceback" in status.traceback
        assert registry.worker_pids() == {}
        # the Status tab's text carries it, folded under the model's name
        from demohub.web.status_tab import last_errors_markdown

        shown = last_errors_markdown(registry.status())
        assert "<summary>nopredict: last error" in shown and str(folder / "runtime.py") in shown
        assert "~~~text\nContractError: " in shown and "Traceback (most recent call last)" in shown
    finally:
        registry.close()


BROKEN_LOAD = RUNTIME.replace('    config = json.loads(', '    raise OSError("weights file is truncated")\n'
                                                       '    config = json.loads(')


def test_load_and_predict_tracebacks_go_to_the_log_and_status_never_to_the_client(tmp_path):
    demos = new_package_dir(tmp_path)
    write_demo(demos, "letters")
    write_demo(demos, "brokenload", runtime=BROKEN_LOAD)
    for name in ("letters", "brokenload"):
        write_stock_model(tmp_path / "models" / name)
    with running_hub("--demos-dir", str(demos), "--models-dir", str(tmp_path / "models"),
                     cache_dir=tmp_path / "cache") as server:
        client = server.client()
        with pytest.raises(AppError) as load_failed:
            client.predict("abc", api_name="/brokenload")
        with pytest.raises(AppError) as predict_failed:
            client.predict("boom", api_name="/letters")
        for error in (load_failed.value, predict_failed.value):
            text = str(error)
            assert "Traceback" not in text and "runtime.py" not in text
            assert "truncated" not in text and "on purpose" not in text
        assert "could not be loaded" in str(load_failed.value)
        events = [json.loads(line) for line in server.logs().splitlines() if line.startswith("{")]
        load_event = next(e for e in events if e.get("event") == "load_failed")
        predict_event = next(e for e in events if e.get("event") == "predict_error")
        assert "Traceback" in load_event["error"] and "weights file is truncated" in load_event["error"]
        assert "runtime.py" in load_event["error"]
        assert "Traceback" in predict_event["error"] and "on purpose" in predict_event["error"]
        assert client.predict("aaa", api_name="/letters")[1]["label"] == "vowel-heavy"
        status_tab_in_the_browser(server.url)


def status_tab_in_the_browser(url: str) -> None:
    """The page's Status tab folds each model's traceback under its name."""
    playwright = pytest.importorskip("playwright.sync_api")
    from test_browser import CHROMIUM, CHROMIUM_ARGS

    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1400})
            page.goto(url)
            page.get_by_role("tab", name="Status").click()
            page.wait_for_selector("summary", timeout=60_000)
            summaries = page.locator("summary").all_inner_texts()
            assert any(t.startswith("brokenload: last error, OSError: weights file is truncated") for t in summaries)
            assert any(t.startswith("letters: last error, RuntimeError") for t in summaries)
            page.locator("summary", has_text="brokenload").click()
            page.get_by_text('raise OSError("weights file is truncated")').wait_for(timeout=10_000)
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "status-tracebacks.png"), full_page=True)
        finally:
            browser.close()


def test_the_hub_refuses_a_transformers_result_without_importing_it():
    if "transformers" in sys.modules:
        pytest.skip("another test imported transformers into this process")
    # what pickling a transformers SequenceClassifierOutput starts with, written by hand
    data = b"\x80\x02ctransformers.modeling_outputs\nSequenceClassifierOutput\n)\x81."
    with pytest.raises(pickle.UnpicklingError, match="plain data"):
        wire.loads_guarded(data)
    assert "transformers" not in sys.modules


def test_the_hub_refuses_any_module_it_has_not_imported_yet():
    name = "curses.textpad"  # importable, and nothing in a web server imports it
    assert name not in sys.modules
    with pytest.raises(pickle.UnpicklingError, match="curses.textpad.Textbox"):
        wire.loads_guarded(b"\x80\x02ccurses.textpad\nTextbox\n)\x81.")
    assert name not in sys.modules
    # modules already in the hub (and numpy, demohub) unpickle as before
    assert wire.loads_guarded(pickle.dumps({"a": [1, 2.5]})) == {"a": [1, 2.5]}


@pytest.mark.parametrize("make, says", [
    (lambda tmp: tmp / "no-such-folder", "no demos folder at"),
    (lambda tmp: write_demo(new_package_dir(tmp), "notab", tab="def make(ctx):\n    pass\n").parent,
     r"must define build(ctx)"),
])
def test_the_hub_refuses_a_bad_demos_folder_with_one_sentence(tmp_path, make, says):
    """An author's first run: the hub names the folder or file to fix, exits 2, no traceback."""
    done = subprocess.run([sys.executable, str(PROJECT_ROOT / "hub.py"), "--demos-dir", str(make(tmp_path)),
                           "--port", "0"], capture_output=True, text=True, timeout=60, cwd=PROJECT_ROOT)
    assert done.returncode == 2 and says in done.stderr and "Traceback" not in done.stderr, done.stderr
