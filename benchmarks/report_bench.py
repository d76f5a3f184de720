"""How fast a full-MMLU report opens and filters in a real browser (target: under 2 s each).

Builds a synthetic run the size of MMLU's test split (14,042 questions over 57 subjects, 5-shot
prompts, log-likelihoods per choice) with tests/report_runs.py, writes its report.html, opens it from
disk in headless Chromium (offline) and measures, in the browser:

- open: navigation start to the end of the load event (the data parsed, every section and the
  first rows of the sample list built);
- each filter: the time from changing a control to the next two animation frames (list re-rendered);
- a text search over every sample's prompt and output.

    python benchmarks/report_bench.py [--runs 3] [--chromium /usr/bin/chromium]

Prints one JSON object; the medians are what docs/report.md quotes. The machine's load average is
printed with it: browser timings on a shared CPU are an upper bound.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the synthetic run writer the tests use

from lmgauge.report.html import write_report  # noqa: E402  (after the path set-up)
from lmgauge.report.load import load_run  # noqa: E402
from report_runs import mmlu_sizes, write_run  # noqa: E402

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking"]

MEASURE = """async ([sel, value]) => {
  const el = document.querySelector(sel);
  const t0 = performance.now();
  if (el.type === 'checkbox') el.checked = value; else el.value = value;
  el.dispatchEvent(new Event('change'));
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  return [performance.now() - t0, document.getElementById('f-count').textContent];
}"""


def build(tmp: Path) -> Path:
    import random

    rng = random.Random(0)
    names = [f"mmlu_subject_{i:02d}" for i in range(57)]
    subjects = {n: [rng.random() < 0.45 for _ in range(k)] for n, k in zip(names, mmlu_sizes())}
    run = write_run(tmp / "mmlu-full", subjects)
    return write_report([load_run(run)], run / "report.html")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        html = build(Path(tmp))
        build_s = time.perf_counter() - t0
        opens, filters = [], {}
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=FLAGS, headless=True)
            for _ in range(args.runs):
                ctx = browser.new_context(offline=True, viewport={"width": 1400, "height": 1000})
                page = ctx.new_page()
                page.goto(html.as_uri())
                page.wait_for_selector("body[data-ready='1']", timeout=60_000)
                nav = page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")
                opens.append(nav)
                steps = [
                    ("task: the mmlu group", "#f-task", "group:mmlu"),
                    ("subject", "#f-subject", "mmlu_subject_30"),
                    ("incorrect", "#f-verdict", "incorrect"),
                    ("all again", "#f-subject", ""),
                ]
                for name, sel, value in steps:
                    ms, count = page.evaluate(MEASURE, [sel, value])
                    filters.setdefault(name, []).append(ms)
                page.fill("#f-search", "question 17 of")  # the search term, applied by the next change
                ms, count = page.evaluate(MEASURE, ["#f-verdict", ""])
                filters.setdefault("text search (all samples)", []).append(ms)
                rows = page.evaluate("document.querySelectorAll('#sample-list .row').length")
                ctx.close()
            browser.close()
        out = {
            "samples": sum(mmlu_sizes()),
            "html_mb": round(html.stat().st_size / 1e6, 2),
            "build_s": round(build_s, 2),
            "open_ms_median": round(statistics.median(opens), 1),
            "open_ms": [round(x, 1) for x in opens],
            "filter_ms_median": {k: round(statistics.median(v), 1) for k, v in filters.items()},
            "last_search_count": count,
            "rows_in_dom": rows,
            "load_average": os.getloadavg(),
        }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
