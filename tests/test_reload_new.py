"""`python -m demohub new NAME --kind image|text` (issue 28): the folder it writes is a
working demo, and the test it writes passes as written."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from demohub.contract import check_runtime, check_tab
from demohub.scaffold import check_name
from support import PROJECT_ROOT


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("scaffold")
    demos = root / f"newdemos_{uuid.uuid4().hex[:8]}"
    demos.mkdir()
    (demos / "__init__.py").write_text("")
    (root / "tests").mkdir()
    for name, kind in (("leafy", "image"), ("asks", "text")):
        done = subprocess.run([sys.executable, "-m", "demohub", "new", name, "--kind", kind, "--demos-dir", str(demos),
                               "--tests-dir", str(root / "tests")], cwd=PROJECT_ROOT, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert f"wrote {demos / name}/" in done.stderr
    return root, demos


def test_it_writes_a_demo_folder_that_keeps_the_contract(written, monkeypatch):
    root, demos = written
    assert sorted(p.name for p in demos.iterdir() if p.is_dir()) == ["asks", "leafy"]
    assert not list(root.glob(".*.new"))  # staged beside the demos and moved in whole
    monkeypatch.syspath_prepend(str(root))
    import importlib

    for name in ("asks", "leafy"):
        check_runtime(importlib.import_module(f"{demos.name}.{name}.runtime"))
        check_tab(importlib.import_module(f"{demos.name}.{name}.tab"))


def test_the_tests_it_writes_pass_as_written(written):
    root, _ = written
    env = {**os.environ, "PYTHONPATH": os.pathsep.join((str(root), str(PROJECT_ROOT / "tests"), str(PROJECT_ROOT)))}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=root,
                          env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "6 passed" in done.stdout


@pytest.mark.parametrize("name, says", [
    ("Leafy", "use lowercase letters"), ("9lives", "use lowercase letters"), ("class", "use lowercase letters"),
    ("my-demo", "use lowercase letters"), ("cassava", "exists already"),
])
def test_a_name_that_cannot_be_a_demo_is_refused(name, says):
    assert says in check_name(name, PROJECT_ROOT / "demos")


def test_a_good_name_is_taken():
    assert check_name("leaf_spots", PROJECT_ROOT / "demos") is None
