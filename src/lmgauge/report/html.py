"""report.html: one self-contained file (data, script and styles inline) that opens from disk.

The data is one JSON blob in a `<script type="application/json">` element, parsed once by the page;
every `<`, `>` and `&` in it is written as a JSON unicode escape, so no text from a model or a dataset
can close the element or open a comment (`</script>`, `<!--`). The page builds its DOM with
textContent only and carries a Content-Security-Policy that allows no network request at all.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

from lmgauge.report.compare import Comparison
from lmgauge.report.html_data import report_data
from lmgauge.report.load import LoadedRun
from lmgauge.runs.rundir import dumps


def _asset(name: str) -> str:
    return resources.files("lmgauge.report").joinpath("assets", name).read_text(encoding="utf-8")


def embed_json(data: Any) -> str:
    """JSON safe inside a <script> element: no '<', '>' or '&' characters left in it."""
    return dumps(data).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_html(data: dict[str, Any]) -> str:
    page = _asset("report.html")
    # replace() with a function-free, single pass per marker; the data goes last so that a marker
    # string inside the data is never substituted
    page = page.replace("/*CSS*/", _asset("report.css"), 1)
    page = page.replace("/*JS*/", _asset("report.js"), 1)
    return page.replace("/*DATA*/", embed_json(data), 1)


def write_report(runs: list[LoadedRun], out: Path, comparison: Comparison | None = None) -> Path:
    """Write the report of one run (or of two, with their comparison) to `out`, atomically."""
    html = render_html(report_data(runs, comparison))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, out)
    return out
