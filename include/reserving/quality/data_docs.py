"""The quality gate's Data Docs, served self-contained by the Reserving view (stdlib only: the failure alert links
them without importing the data stack).

Great Expectations 1.x renders its pages with Bootstrap, jQuery, bootstrap-table, Vega and Font Awesome from CDNs
(and its logo from S3); its index fills the tables of validation results with JavaScript, so offline or behind a
firewall it shows nothing. GX ships only images, fonts and its own stylesheet (inline in every page already). So the
view serves, per gate run (``runs/<V>/<run_id>/quality/``):

- an index of its own (``index.html`` of the view's Data Docs route): each validation with its outcome and counts from
  ``validation_results.json``, linking GX's page, and each expectation suite's page;
- every GX page with all scripts and every stylesheet, image or font from elsewhere removed, plus a short stylesheet
  laying out the Bootstrap classes GX's tables use; the response forbids any other source (Content-Security-Policy).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

VIEW_PREFIX = "/reserving"  # where the plugin mounts the Reserving app in Airflow's api-server
DOCS_FOLDER = ("quality", "data_docs")  # under the run's artifact folder (stages.input writes quality/)
RESULTS_FILE = ("quality", "validation_results.json")
# Nothing from another origin, no script; GX's inline styles and its own images stay.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self'; "
    "frame-ancestors 'self'; base-uri 'none'; form-action 'none'"
)
# Airflow's allowed run ids ([scheduler] allowed_run_id_pattern); path separators and NUL never match.
RUN_ID = re.compile(r"[A-Za-z0-9_.~:+-]{1,250}")
SERVED = {".html", ".css", ".png", ".gif", ".svg", ".ico", ".otf", ".woff", ".woff2"}

_SCRIPT = re.compile(r"<script\b[^>]*>.*?</script\s*>", re.IGNORECASE | re.DOTALL)
_EXTERNAL_TAG = re.compile(r"<(?:link|img|iframe|source)\b[^>]*\b(?:href|src)\s*=\s*[\"']?(?:https?:)?//[^>]*>", re.I)
_EXTERNAL_CSS_URL = re.compile(r"url\(\s*[\"']?(?:https?:)?//[^)]*\)", re.IGNORECASE)
_HEAD_END = re.compile(r"</head\s*>", re.IGNORECASE)
# Enough of Bootstrap's layout for GX's pages to read: tables ruled, badges and alerts coloured; GX's top bar and
# sticky footer (a logo and a newsletter) and its result filter (it needs GX's scripts) out of the way.
STYLE = """<style id="reserving-data-docs">
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 16px 24px; color: #1f2933; }
body > nav, footer, #ge-cta-footer { display: none !important; }
.card:has(.btn-group-toggle) { display: none; } .nav { list-style: none; padding-left: 8px; }
table { border-collapse: collapse; margin: 6px 0 12px; font-size: 13px; }
th, td { border: 1px solid #d9dee3; padding: 4px 8px; vertical-align: top; text-align: left; }
th { background: #f5f7fa; } .alert { padding: 6px 10px; border-radius: 4px; background: #f5f7fa; margin: 8px 0; }
.badge { padding: 1px 6px; border-radius: 8px; background: #e4e7eb; } .text-danger { color: #b42318; }
.text-success { color: #1f7a3d; } .card { border: 1px solid #d9dee3; border-radius: 6px; padding: 8px; margin: 8px 0; }
.row { display: flex; flex-wrap: wrap; gap: 16px; } .col-12 { flex: 1 1 100%; } ul { margin: 4px 0; }
</style>
"""


@dataclass(frozen=True)
class Page:
    """One GX page of a gate run: a validation (with its outcome) or an expectation suite."""

    kind: str  # "validation" or "expectation suite"
    suite: str
    path: str  # relative to the Data Docs folder, with "/"
    success: bool | None = None
    evaluated: int | None = None
    unsuccessful: int | None = None


def docs_url(base_url: str, valuation_date: dt.date, run_id: str) -> str:
    """The Reserving view's address of a gate run's Data Docs under Airflow's base URL ([api] base_url)."""
    return f"{base_url.rstrip('/')}{VIEW_PREFIX}/data-docs/{valuation_date.isoformat()}/{quote(run_id, safe='')}/"


def is_run_id(run_id: str) -> bool:
    """Whether ``run_id`` can be an Airflow run id (and names no folder outside its valuation's)."""
    return bool(RUN_ID.fullmatch(run_id)) and run_id.strip(".") != ""


def pages(docs: Path, results_file: Path) -> list[Page]:
    """The run's validation pages (failed first, then by suite) and expectation suite pages (by name)."""
    outcome = {}
    if results_file.is_file():
        results = json.loads(results_file.read_text(encoding="utf-8"))
        for validation in [*results.get("validations", []), *results.get("failure_examples", [])]:
            stats = validation.get("statistics") or {}
            outcome[validation.get("suite_name")] = (
                bool(validation.get("success")),
                stats.get("evaluated_expectations"),
                stats.get("unsuccessful_expectations"),
            )
    found = []
    for page in sorted((docs / "validations").glob("*/**/*.html")):
        suite = page.relative_to(docs / "validations").parts[0]
        found.append(Page("validation", suite, page.relative_to(docs).as_posix(), *outcome.get(suite, (None,) * 3)))
    found.sort(key=lambda p: (p.success is not False, p.suite))
    suites = [
        Page("expectation suite", page.stem, page.relative_to(docs).as_posix())
        for page in sorted((docs / "expectations").glob("*.html"))
    ]
    return found + suites


def self_contained(html: str) -> str:
    """A GX page without scripts and without any stylesheet, image or font from elsewhere, with the view's style."""
    html = _SCRIPT.sub("", html)
    html = _EXTERNAL_TAG.sub("", html)
    html = _EXTERNAL_CSS_URL.sub("none", html)
    head_end = _HEAD_END.search(html)
    if head_end is None:
        return STYLE + html
    return html[: head_end.start()] + STYLE + html[head_end.start() :]
