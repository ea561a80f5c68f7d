"""The page in a real headless Chromium (Debian's, driven by Playwright):
every tab, one prediction each, and the hub embedded in an <iframe>.

Screenshots go to test-artifacts/browser/ so a person can look at them.
"""

from __future__ import annotations

import re
import shutil
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from support import PROJECT_ROOT, SHARED_DATA

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "browser"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage"]
PREDICTION_TIMEOUT_MS = 180_000

#: How a person uses each tab: (tab title, what to do, button, text that proves a result).
IMAGE = SHARED_DATA / "images"
SCENARIOS = {
    "cassava": ("Cassava leaf disease", ("upload", IMAGE / "cassava_1.jpg"), "Diagnose",
                re.compile(r"Cassava|Healthy|Uncertain", re.I)),
    "durian": ("Durian breed", ("upload", IMAGE / "durian_1.jpg"), "Identify the breed",
               re.compile(r"D24|Jin Feng|Mao Shan Wang|Red Prawn|Uncertain", re.I)),
    "questions": ("Question type", ("type", "What is the capital of Nigeria?"), "Classify",
                  re.compile(r"location", re.I)),
}


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (scripts/setup.sh --test installs it)")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def hub(demo_hub):
    return demo_hub


def run_scenario(page_or_frame, name: str, shot) -> None:
    title, (action, value), button, expected = SCENARIOS[name]
    page_or_frame.get_by_role("tab", name=title).click()
    panel = page_or_frame.locator(f"#tab-{name}")
    if action == "upload":
        panel.locator("input[type=file]").first.set_input_files(str(value))
        panel.locator("img").first.wait_for(timeout=30_000)
    else:
        panel.get_by_role("textbox").first.fill(value)
    panel.get_by_role("button", name=button).click()
    # gr.Label's headline: it appears only once the prediction has come back.
    panel.locator("[data-testid=label-output-value]").filter(has_text=expected).first.wait_for(
        timeout=PREDICTION_TIMEOUT_MS)
    panel.get_by_text("Model ready").first.wait_for(timeout=15_000)  # the status line caught up
    shot(name)


def test_every_tab_predicts_in_the_browser(browser, hub):
    page = browser.new_page(viewport={"width": 1280, "height": 1400})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(hub.url, wait_until="networkidle")
    shot = lambda n: page.screenshot(path=str(ARTIFACTS / f"tab-{n}.png"), full_page=True)  # noqa: E731
    for name in SCENARIOS:
        run_scenario(page, name, shot)
    page.get_by_role("tab", name="Status").click()
    page.get_by_text("models loaded").wait_for(timeout=15_000)
    page.wait_for_timeout(3500)  # one status refresh tick
    shot("status")
    assert not errors, errors
    page.close()


def test_the_hub_works_inside_an_iframe(browser, hub, tmp_path):
    (tmp_path / "index.html").write_text(
        "<!doctype html><html><body><h1>My blog post</h1>"
        f'<iframe id="hub" src="{hub.url}" width="1200" height="1300" style="border:1px solid #ccc">'
        "</iframe></body></html>"
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 1500})
        page.goto(f"http://127.0.0.1:{server.server_address[1]}/index.html")
        frame = page.frame_locator("#hub")
        run_scenario(frame, "questions",
                     lambda n: page.screenshot(path=str(ARTIFACTS / "iframe-questions.png"), full_page=True))
        page.close()
    finally:
        server.shutdown()
        server.server_close()
