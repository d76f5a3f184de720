"""report.html in a real browser: headless Chromium (Debian's `chromium`) driven by Playwright.

The page is opened from disk in an offline context whose every request is recorded (and any that is
not the file itself aborted); the numbers on it are compared with values recomputed here straight
from the run directory's files; filters, a deep link, the flip count and the escaping of hostile text
are checked on synthetic runs whose every answer is known. Screenshots of a report and of a
comparison are kept in $LMGAUGE_TEST_ARTIFACTS (default: test-artifacts/ in the checkout).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from lmgauge.report.compare import compare_runs
from lmgauge.report.html import write_report
from lmgauge.report.load import load_run
from report_runs import XSS, write_run
from system_tools import missing_tool

T, F = True, False
ASTRONOMY = [T, T, F, T, F, T, T, F]
ANATOMY = [T, F, F, T, T]
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND",  # no name resolves: nothing could leave even if asked
]
ARTIFACTS = Path(os.environ.get("LMGAUGE_TEST_ARTIFACTS") or Path(__file__).resolve().parent.parent / "test-artifacts")


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        missing_tool("chromium (Debian package chromium), the browser the report tests drive")
    return found


@pytest.fixture(scope="module")
def browser():
    path = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the playwright package is missing: pip install -e '.[test]' installs it", pytrace=False)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=FLAGS, headless=True)
        yield b
        b.close()


class Page:
    """An offline page on a report file, recording every request, console error and page error."""

    def __init__(self, browser, html: Path, fragment: str = "") -> None:
        self.context = browser.new_context(offline=True, viewport={"width": 1400, "height": 1000})
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.url = html.resolve().as_uri()
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.goto(self.url + fragment)
        self.page.wait_for_selector("body[data-ready='1']", timeout=20_000)

    def _route(self, route) -> None:
        if route.request.url.split("#")[0] == self.url:
            route.continue_()
        else:
            route.abort()

    def wait_until(self, js: str, timeout_s: float = 10.0) -> None:
        """Poll a JS expression from here: the page's CSP forbids the eval wait_for_function uses."""
        deadline = time.monotonic() + timeout_s
        while not self.page.evaluate(js):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {js}")
            time.sleep(0.05)

    def count(self) -> int:
        return int(self.page.text_content("#f-count").split(" of ")[0])

    def close(self) -> None:
        self.context.close()


def one_run(tmp_path, xss=False, **kw) -> Path:
    run = write_run(
        tmp_path / "a",
        {"mmlu_astronomy": ASTRONOMY, "mmlu_anatomy": ANATOMY},
        generation=[T, F, T],
        code=[T, F],
        perplexity=[-300.0, -310.0],
        xss=xss,
        **kw,
    )
    return write_report([load_run(run)], run / "report.html")


def python_means(run_dir: Path) -> dict[tuple[str, str], tuple[float, int]]:
    """(task, metric) -> (mean over docs, n), from the samples files alone."""
    out = {}
    for f in sorted((run_dir / "samples" / "m").glob("*.jsonl")):
        rows = [json.loads(line) for line in f.read_text().splitlines()]
        for metric in rows[0]["metrics"]:
            values = [r["metrics"][metric] for r in rows]
            out[(f.stem, metric)] = (sum(values) / len(values), len(values))
    return out


def test_opens_from_disk_without_any_request(browser, tmp_path):
    html = one_run(tmp_path)
    p = Page(browser, html)
    try:
        assert p.requests == [p.url], p.requests  # the file itself and nothing else
        assert p.errors == []
        for section in ("summary-A", "tasks-A", "groups-A", "perplexity", "timing", "samples"):
            assert p.page.query_selector(f"section#{section}") is not None, section
        assert p.page.query_selector("#groups-A svg") is not None  # the per-subject chart, inline SVG
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        p.page.click("#sample-list .row >> nth=2")
        p.page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
    finally:
        p.close()


def test_numbers_on_the_page_equal_the_run_directory(browser, tmp_path):
    html = one_run(tmp_path)
    expected = python_means(html.parent)
    p = Page(browser, html)
    try:
        cells = p.page.eval_on_selector_all(
            "#tasks-table-A tr[data-task]",
            "rows => rows.map(r => [r.dataset.task, r.dataset.metric, r.querySelector('.metric-value').dataset.value, r.querySelector('.metric-n').dataset.value])",
        )
        seen = 0
        for task, metric, value, n in cells:
            if (task, metric) in expected:
                mean, count = expected[(task, metric)]
                assert float(value) == pytest.approx(mean, abs=1e-12), (task, metric)
                assert int(n) == count
                seen += 1
        assert seen == 5  # 2 subjects' acc, gsm8k's two filters, pass@1 (the ppl task's result is corpus-level)
        # the group's micro accuracy: every member doc pooled
        micro = p.page.get_attribute(
            "#groups-A tr[data-group='mmlu'][data-metric='acc (micro)'] .metric-value", "data-value"
        )
        pooled = ASTRONOMY + ANATOMY
        assert float(micro) == pytest.approx(sum(pooled) / len(pooled), abs=1e-12)
        shown = p.page.text_content("#groups-A tr[data-group='mmlu'][data-metric='acc (micro)'] .metric-value")
        assert shown == f"{sum(pooled) / len(pooled) * 100:.2f}"
    finally:
        p.close()


def test_filters_and_a_deep_link(browser, tmp_path):
    html = one_run(tmp_path)
    total = len(ASTRONOMY) + len(ANATOMY) + 3 + 2 + 2
    p = Page(browser, html)
    try:
        assert p.count() == total
        p.page.select_option("#f-task", "group:mmlu")
        assert p.count() == len(ASTRONOMY) + len(ANATOMY)
        p.page.select_option("#f-subject", "mmlu_anatomy")
        assert p.count() == len(ANATOMY)
        p.page.select_option("#f-verdict", "incorrect")
        assert p.count() == ANATOMY.count(F)
        p.page.select_option("#f-verdict", "correct")
        assert p.count() == ANATOMY.count(T)
        p.page.select_option("#f-task", "")
        p.page.select_option("#f-verdict", "")
        p.page.fill("#f-search", "question 3 of astronomy")
        p.wait_until("document.getElementById('f-count').textContent.startsWith('1 of')")
        p.page.click("#sample-list .row")
        assert p.page.evaluate("location.hash") == "#sample=A/m/mmlu_astronomy/3"
    finally:
        p.close()
    p = Page(browser, html, "#sample=A/m/mmlu_anatomy/2")
    try:
        assert p.page.get_attribute("#sample-detail .sample", "data-doc") == "2"
        assert "mmlu_anatomy | doc 2" in p.page.text_content("#sample-detail .sample h3")
        assert p.page.query_selector("#sample-list .row.sel") is not None  # scrolled to and marked
    finally:
        p.close()


def test_flip_count_of_a_comparison(browser, tmp_path):
    b_ast, b_ana = list(ASTRONOMY), list(ANATOMY)
    b_ast[1] = F  # right -> wrong
    b_ana[2] = T  # wrong -> right
    b_ast[7] = T  # wrong -> right
    a = load_run(write_run(tmp_path / "a", {"mmlu_astronomy": ASTRONOMY, "mmlu_anatomy": ANATOMY}, seed=1))
    b = load_run(write_run(tmp_path / "b", {"mmlu_astronomy": b_ast, "mmlu_anatomy": b_ana}, seed=2))
    html = write_report([a, b], tmp_path / "compare.html", compare_runs(a, b))
    p = Page(browser, html)
    try:
        assert p.requests == [p.url] and p.errors == []

        def flips(name):
            row = f"#flip-table tr[data-name='{name}']"
            return int(p.page.text_content(f"{row} td:nth-child(3)")), int(
                p.page.text_content(f"{row} td:nth-child(4)")
            )

        assert flips("mmlu_astronomy") == (1, 1)
        assert flips("mmlu_anatomy") == (0, 1)
        assert flips("mmlu") == (1, 2)
        p.page.check("#f-flipped")
        assert p.count() == 2 * 3  # three flipped docs, each shown from both runs
        assert len(p.page.query_selector_all("#delta-chart circle")) == 2
        p.page.select_option("#f-run", "0")
        p.page.click("#sample-list .row")
        assert len(p.page.query_selector_all("#sample-detail .sample")) == 2  # A and B side by side
        assert "flipped right to wrong" in p.page.text_content("#sample-detail")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        p.page.screenshot(path=str(ARTIFACTS / "compare.png"), full_page=True)
    finally:
        p.close()


def test_hostile_text_runs_nothing(browser, tmp_path):
    html = one_run(tmp_path, xss=True)
    p = Page(browser, html, "#sample=A/m/mmlu_astronomy/0")
    try:
        detail = p.page.text_content("#sample-detail")
        assert XSS["script"] in detail and XSS["img"] in detail and XSS["markup"] in detail  # shown as text
        p.page.select_option("#f-task", "gsm8k_cot")
        p.page.click("#sample-list .row")  # the generation whose output carries an <img onerror>
        assert XSS["img"] in p.page.text_content("#sample-detail")
        p.page.wait_for_timeout(200)
        assert p.page.evaluate("typeof window.__pwned") == "undefined"
        assert p.page.query_selector_all("img") == []
        # the markup stayed text: no element was made from it (the page's own labels are <b>, never "bold")
        made = p.page.evaluate(
            "[...document.querySelectorAll('b, a')].filter(e => e.textContent === 'bold' || e.textContent === 'link' || (e.getAttribute('href') || '').startsWith('javascript')).length"
        )
        assert made == 0
        assert p.errors == [] and p.requests == [p.url]
    finally:
        p.close()


def test_only_visible_rows_are_rendered(browser, tmp_path):
    run = write_run(tmp_path / "big", {"mmlu_astronomy": [T, F] * 1000})
    html = write_report([load_run(run)], run / "report.html")
    p = Page(browser, html)
    try:
        assert p.count() == 2000
        assert len(p.page.query_selector_all("#sample-list .row")) < 80
        p.page.eval_on_selector(
            "#sample-list", "el => { el.scrollTop = 28 * 1500; el.dispatchEvent(new Event('scroll')); }"
        )
        p.wait_until("document.querySelector('#sample-list .row[data-index=\"1500\"]') !== null")
        assert len(p.page.query_selector_all("#sample-list .row")) < 80
    finally:
        p.close()


def test_served_tasks_show_their_request_latency(browser, tmp_path):
    run = write_run(tmp_path / "a", {"mmlu_astronomy": ASTRONOMY, "mmlu_anatomy": ANATOMY})
    path = run / "results" / "m" / "mmlu_astronomy.json"
    result = json.loads(path.read_text())
    result["latency"] = {"requests": 32, "calls": 32, "retried": 1, "streamed": 0, "mean_e2el_ms": 743.42}
    result["latency"].update({"median_e2el_ms": 768.0, "p90_e2el_ms": 836.9, "p99_e2el_ms": 884.8})
    path.write_text(json.dumps(result))
    p = Page(browser, write_report([load_run(run)], run / "report.html"))
    try:
        assert p.errors == []
        rows = p.page.query_selector_all("#request-latency-table tr")
        assert len(rows) == 2  # the header and mmlu_astronomy: anatomy was not served
        cells = [c.text_content() for c in rows[1].query_selector_all("td")]
        assert cells == ["A", "m", "mmlu_astronomy", "32", "743.4", "768.0", "836.9", "884.8", "-", "-", "1"]
    finally:
        p.close()
