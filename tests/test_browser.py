"""The page in a real headless Chromium (Debian's, driven by Playwright):
every tab, one prediction each, and the hub embedded in an <iframe>.

Screenshots go to test-artifacts/browser/ so a person can look at them.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import tarfile
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from support import CASSAVA_PHOTOS, DURIAN_PHOTO, PROJECT_ROOT, hub_cache, running_hub

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "browser"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage"]
PREDICTION_TIMEOUT_MS = 180_000
#: Each Status table header and the lines it takes on the page: at 1280 px a one-column-per-
#: counter table had squeezed them to a letter or two per line ("ev / ic / ti / on / s").
HEADER_LINES = """() => [...document.querySelectorAll('#tab-status th .header')].map(el => {
    const range = document.createRange(); range.selectNodeContents(el);
    const tops = new Set([...range.getClientRects()].map(r => Math.round(r.top)));
    return [el.innerText.trim(), tops.size]; })"""

#: How a person uses each tab: (tab title, what to do, button, text that proves a result).
SCENARIOS = {
    "cassava": ("Cassava leaf disease", ("upload", CASSAVA_PHOTOS[0]), "Diagnose",
                re.compile(r"Cassava|Healthy|Uncertain", re.I)),
    "durian": ("Durian breed", ("upload", DURIAN_PHOTO), "Identify the breed",
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
    lines = page.evaluate(HEADER_LINES)
    assert lines and all(n <= len(text.split()) for text, n in lines), f"a header broken inside a word: {lines}"
    assert not errors, errors
    page.close()


def test_search_tab_filter_keyword_column_and_more_like_this(browser, hub):
    """The fourth tab as a visitor uses it: a description, the noun filter, both columns
    (semantic and BM25), then "more like this" by selecting a result."""
    page = browser.new_page(viewport={"width": 1280, "height": 1400})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(hub.url, wait_until="networkidle")
    page.get_by_role("tab", name="Reverse dictionary").click()
    panel = page.locator("#tab-search")
    panel.get_by_role("textbox").first.fill("fear of small closed spaces")
    panel.get_by_text("noun", exact=True).first.click()
    panel.get_by_role("button", name="Search", exact=True).click()
    info = panel.get_by_text(re.compile(r"results in [0-9.]+ ms"))
    info.wait_for(timeout=PREDICTION_TIMEOUT_MS)
    semantic, keyword = panel.locator(".table-wrap").nth(0), panel.locator(".table-wrap").nth(1)
    semantic.get_by_text("claustrophobia").first.wait_for(timeout=15_000)
    assert "\nnoun\n" in keyword.inner_text()
    assert not re.search(r"\n(verb|adj|adv)\n", semantic.inner_text() + keyword.inner_text())  # the filter
    panel.get_by_text("Model ready").first.wait_for(timeout=15_000)
    page.screenshot(path=str(ARTIFACTS / "tab-search.png"), full_page=True)
    semantic.get_by_text("claustrophobia").first.click()  # select the row: more like it
    panel.get_by_text(re.compile(r"Entries like \S+-[nvar] ")).first.wait_for(timeout=60_000)
    chosen = panel.get_by_role("textbox").first.input_value()
    assert chosen.startswith("like:") and chosen[5:] not in semantic.inner_text()  # the entry itself left out
    page.screenshot(path=str(ARTIFACTS / "tab-search-more-like-this.png"), full_page=True)
    panel.get_by_role("textbox").first.fill("embed:a young dog")  # the encoder as an API
    panel.get_by_role("button", name="Search", exact=True).click()
    panel.get_by_text(re.compile(r"Embedding of .a young dog.: 384 numbers")).first.wait_for(timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "tab-search-embed.png"), full_page=True)
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


@pytest.fixture(scope="module")
def fresh_clone(tmp_path_factory):
    """A hub started from `git archive HEAD`: the committed files only, as a clone from
    GitHub or the Space image has them, with no ../shared beside it. Its placeholders
    are kept under .cache/ so reruns skip rebuilding them."""
    if shutil.which("git") is None or not (PROJECT_ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout (git archive HEAD makes the fresh clone)")
    root = tmp_path_factory.mktemp("clone") / "demohub"
    archive = subprocess.run(["git", "-C", str(PROJECT_ROOT), "archive", "HEAD"], capture_output=True,
                             check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(root, filter="data")
    assert not (root.parent / "shared").exists()
    with running_hub(root=root, cache_dir=hub_cache("test-clone-hub")) as server:
        yield server


def test_a_fresh_clone_shows_examples_on_every_tab_and_they_answer(browser, fresh_clone):
    """Every tab of a hub from a bare `git archive` lists its SPEC's examples (the photos'
    thumbnails really load), and clicking the first one then the button gives an answer."""
    from demos.cassava import SPEC as CASSAVA
    from demos.durian import SPEC as DURIAN
    from demos.questions import SPEC as QUESTIONS

    page = browser.new_page(viewport={"width": 1280, "height": 1400})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(fresh_clone.url, wait_until="networkidle")
    for spec in (CASSAVA, DURIAN, QUESTIONS):
        title, (action, _), button, expected = SCENARIOS[spec.name]
        page.get_by_role("tab", name=title).click()
        panel = page.locator(f"#tab-{spec.name}")
        examples = panel.locator("button.gallery-item")
        examples.first.wait_for(timeout=15_000)
        assert examples.count() == len(spec.examples), (spec.name, examples.count())
        if action == "upload":
            thumbnails = examples.locator("img")
            assert thumbnails.count() == len(spec.examples)
            page.wait_for_function("(imgs) => imgs.every(i => i.complete && i.naturalWidth > 0)",
                                   arg=thumbnails.element_handles(), timeout=15_000)
            examples.first.click()
            picked = panel.locator("[data-testid=image] img").first
            picked.wait_for(timeout=30_000)  # the example is now the input
            assert picked.get_attribute("src").endswith(Path(spec.examples[0]).name)
        else:
            from playwright.sync_api import expect

            examples.first.click()  # the page fills the box a moment later: wait for it, bounded
            expect(panel.get_by_role("textbox").first).to_have_value(spec.examples[0], timeout=15_000)
        panel.get_by_role("button", name=button).click()
        panel.locator("[data-testid=label-output-value]").filter(has_text=expected).first.wait_for(
            timeout=PREDICTION_TIMEOUT_MS)
        panel.get_by_text("Model ready").first.wait_for(timeout=15_000)
        if action == "upload":  # the input, the heatmap and every thumbnail are drawn
            assert panel.locator("img").count() == len(spec.examples) + 2
            page.wait_for_function(
                "(p) => Array.from(p.querySelectorAll('img')).every(i => i.complete && i.naturalWidth)",
                arg=panel.element_handle(), timeout=15_000)
        page.screenshot(path=str(ARTIFACTS / f"clone-examples-{spec.name}.png"), full_page=True)
    assert not errors, errors
    page.close()


#: The aria-label Vega gives each mark: "field: value; ..." for every encoded and tooltip field.
PLOT_LABELS = """(id) => Array.from(document.querySelectorAll(`#${id} svg g.role-mark path`))
                    .map(p => p.getAttribute("aria-label") || "")"""


def plot_labels(page, plot: str) -> list[str]:
    return page.evaluate(PLOT_LABELS, f"plot-{plot}")


def parse_label(label: str) -> dict:
    """Vega's "field: value; field: value" (numbers with thousands commas and a real minus sign)."""
    out: dict = {}
    for part in label.split("; "):
        key, _, value = part.partition(": ")
        number = value.replace(",", "").replace("\u2212", "-")
        try:
            out[key] = float(number)
        except ValueError:
            out[key] = value
    return out


def line_of(page, plot: str, series: str) -> list[tuple[float, float]]:
    """(seconds from now, MB) of one line of a memory plot, in time order."""
    points = [parse_label(label) for label in plot_labels(page, plot)]
    return sorted({(p["seconds from now"], p["MB"]) for p in points if p.get("process") == series and p.get("at")})


def stacks(page) -> list[dict[str, float]]:
    """The stacked memory plot's bars, as {process: MB} per sample, in time order."""
    by_time: dict[float, dict[str, float]] = {}
    for bar in (parse_label(label) for label in plot_labels(page, "memory")):
        if bar.get("at"):
            by_time.setdefault(bar["seconds from now"], {})[bar["process"]] = bar["MB"]
    return [by_time[t] for t in sorted(by_time)]


def there_gone_back(samples: list[dict[str, float]], process: str) -> bool:
    """`process` holds memory (> 10 MB), then has no bar while others do, then holds memory again."""
    marks = ["x" if s.get(process, 0) > 10 else "-" for s in samples]
    return bool(re.search(r"x+-+x", "".join(marks)))


def wait_for_plot(page, plot: str, *needles: str, timeout: float = 60_000) -> None:
    """Until one mark of `plot` carries every needle in its label (data drawn, not just sent)."""
    page.wait_for_function(
        """([id, needles]) => Array.from(document.querySelectorAll(`#${id} svg g.role-mark path`))
              .some(p => needles.every(n => (p.getAttribute("aria-label") || "").includes(n)))""",
        arg=[f"plot-{plot}", list(needles)], timeout=timeout)


def test_status_tab_plots_what_happened(browser):
    """A hub holding one model at a time: questions, then cassava (evicting questions), then
    questions again. The Status tab must draw it: each process's memory stacked sample by
    sample (questions' bar there, gone, back), their total under the budget line, the hub process, loads and evictions on the same time axis, every
    request, and p50/p95 per demo; a new request changes a plot's data without redrawing it."""
    with running_hub("--only", "questions,cassava", "--max-models", "1", "--memory-budget", "3G",
                     "--status-every", "1", cache_dir=hub_cache()) as hub:
        page = browser.new_page(viewport={"width": 1280, "height": 1500})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(hub.url, wait_until="networkidle")
        page.get_by_role("tab", name="Status").click()
        page.get_by_text("models loaded").wait_for(timeout=15_000)

        from gradio_client import handle_file

        client = hub.client()
        for question in ("Who wrote Hamlet?", "What is the capital of Nigeria?", "How far is the Moon?"):
            client.predict(question, api_name="/questions")
        page.wait_for_timeout(2_500)  # each model stays loaded for two memory samples (every second)
        client.predict(handle_file(str(CASSAVA_PHOTOS[0])), api_name="/cassava")
        page.wait_for_timeout(2_500)
        client.predict("When did the Berlin wall fall?", api_name="/questions")

        wait_for_plot(page, "events", "model: questions", "event: evict")
        wait_for_plot(page, "events", "model: cassava", "event: load")
        wait_for_plot(page, "latency", "demo: questions p95", "requests: 4")
        wait_for_plot(page, "latency", "demo: cassava p50", "requests: 1")
        wait_for_plot(page, "hub", "process: hub process")
        assert max(mb for _, mb in line_of(page, "hub", "hub process")) > 20
        wait_for_plot(page, "memory", "process: cassava")
        wait_for_plot(page, "total", "process: budget")
        total = [parse_label(label) for label in plot_labels(page, "total")]
        metrics = hub.get("/metrics")[1]
        budget_bytes = float(re.search(r"^demohub_memory_budget_bytes (\S+)$", metrics, re.M).group(1))
        budget = {p["MB"] for p in total if p.get("process") == "budget"}
        assert budget == {round(budget_bytes / 2**20, 1)}, budget
        # questions' worker: a bar in every sample while loaded, none once cassava evicted it, then back
        deadline = time.monotonic() + 60
        while not there_gone_back(stacks(page), "questions") and time.monotonic() < deadline:
            page.wait_for_timeout(500)
        assert there_gone_back(stacks(page), "questions"), stacks(page)
        legend = page.locator("#plot-memory svg g.role-legend-label text").all_text_contents()
        assert {"questions", "cassava"} <= set(legend), legend
        legend = page.locator("#plot-total svg g.role-legend-label text").all_text_contents()
        assert {"all processes", "budget"} <= set(legend), legend
        requests = [label for label in plot_labels(page, "requests") if "model: questions" in label
                    and not label.endswith("at: ")]
        assert len(requests) == 4, requests

        # the next tick swaps the data in place: the same <svg>, a new request count
        page.wait_for_timeout(2_500)  # two refreshes: any pending redraw is done
        page.evaluate("() => { document.querySelector('#plot-latency svg').dataset.probe = 'kept'; }")
        client.predict("Which river is the longest?", api_name="/questions")
        wait_for_plot(page, "latency", "demo: questions p50", "requests: 5")
        assert page.evaluate("() => document.querySelector('#plot-latency svg').dataset.probe") == "kept"

        page.wait_for_timeout(1_500)
        page.screenshot(path=str(ARTIFACTS / "status-plots.png"), full_page=True)
        assert not errors, errors
        page.close()
