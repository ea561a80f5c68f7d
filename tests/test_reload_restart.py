"""--reload and the hub's own code (issue 28): a saved change under demohub/ outside
kit/ restarts the hub process in place, as `uvicorn --reload` does, and says why.

Run on a copy of the checkout (`git archive HEAD`), so the suite never edits its
own code."""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
import time

import pytest

from support import PROJECT_ROOT, running_hub


def test_a_change_to_the_hubs_own_code_restarts_it_and_says_why(tmp_path):
    if shutil.which("git") is None or not (PROJECT_ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout (git archive HEAD makes the copy)")
    root = tmp_path / "checkout"
    archive = subprocess.run(["git", "-C", str(PROJECT_ROOT), "archive", "HEAD"], capture_output=True,
                             check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(root, filter="data")
    demos = root / "tests" / "fixtures" / "testdemos"
    with running_hub("--reload", "--demos-dir", str(demos), root=root, timeout=90) as hub:
        errors = root / "demohub" / "errors.py"
        errors.write_text(errors.read_text() + "\n# saved by the test\n")
        said = "demo hub: restarting: the hub's own code changed (demohub/errors.py)"
        deadline = time.monotonic() + 60
        while said not in hub.logs() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert said in hub.logs(), hub.logs()[-3000:]
        assert hub.proc.poll() is None  # the same process, its code read again (execv)
        while time.monotonic() < deadline:  # and it serves again
            try:
                if hub.get("/healthz", timeout=2)[0] == 200 and hub.logs().count(said) == 1:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        status, _ = hub.get("/healthz", timeout=5)
        assert status == 200
        assert hub.logs().count(said) == 1  # once: the restarted hub does not see its own start as a change
