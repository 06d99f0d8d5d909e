"""The Reserving view and read API, a FastAPI app that the plugin mounts in Airflow's api-server at ``/reserving``.

Routes (relative to the mount):

- ``GET /``: server-rendered page: latest published reserves by line and origin, champion history, pending approvals
  (model card links, the Variable key and value to set), pipeline health.
- ``GET /api/reserves?valuation_date=YYYY-MM-DD``: the current published version for V (default: the latest),
  its metadata, line totals and rows. 400 if V is not a date or not a month end, 404 if nothing is published.
- ``GET /api/champion``, ``GET /api/approvals/pending``.
- ``GET /model-cards/{valuation_date}/{model_version}.{md|pdf}``: a challenger's model card, read only from under
  the artifact root.

Authentication (checked on Airflow 3.3.2, simple auth manager, see tests/plugins/): every route depends on
``requires_authenticated()`` from ``airflow.api_fastapi.core_api.security``, which accepts either

- an ``Authorization: Bearer <jwt>`` header (the token from ``POST /auth/token``; API clients, curl), or
- the ``_token`` cookie. The UI's login page stores the JWT from ``POST /auth/token`` in that cookie (path ``/``,
  or the ``[api] base_url`` path) and the api-server's JWTRefreshMiddleware refreshes it. The nav entry is an
  external view with a ``url_route``, so the UI renders ``/reserving/`` in an iframe on the same origin: the browser
  sends the cookie with the iframe's request, and links opened from the page (model cards) carry it too.

No token gives 401 ("Not authenticated"), a malformed or foreign token 403 ("Invalid JWT token"), an expired one
401. The page answers a browser without a session with a 401 page linking to Airflow's login. The app itself does
no work until the first request: the warehouse (connection ``reserving_db``) and the artifact root are resolved then.
"""

from __future__ import annotations

import datetime as dt
import html
import threading
from typing import Annotated, Any
from urllib.parse import quote

from airflow.api_fastapi.core_api.security import requires_authenticated
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import FileResponse, HTMLResponse
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from include.reserving import views
from include.reserving.dates import parse_valuation_date

authenticated = requires_authenticated()  # one object, so tests can override it (dependency_overrides)


class Warehouse:
    """The warehouse engine and artifact root, resolved on first use (plugin import must not touch a database)."""

    def __init__(self, engine: Engine | None = None, artifact_root: str | None = None) -> None:
        self._engine, self._artifact_root = engine, artifact_root
        self._lock = threading.Lock()

    def _resolve(self) -> None:
        from include.reserving.config import load_settings, warehouse_url
        from include.reserving.warehouse.core import make_engine

        with self._lock:
            if self._engine is None or self._artifact_root is None:
                settings = load_settings()
                self._artifact_root = self._artifact_root or settings.artifact_root
                self._engine = self._engine or make_engine(warehouse_url(settings))

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._resolve()
        return self._engine

    @property
    def artifact_root(self) -> str:
        if self._artifact_root is None:
            self._resolve()
        return self._artifact_root


def _warehouse(request: Request) -> Warehouse:
    return request.app.state.warehouse


WarehouseDep = Annotated[Warehouse, Depends(_warehouse)]


def _date_or_400(raw: str) -> dt.date:
    try:
        return parse_valuation_date(raw)
    except ValueError as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from None


def create_app(engine: Engine | None = None, artifact_root: str | None = None) -> FastAPI:
    """The Reserving app; ``engine`` and ``artifact_root`` default to the configured warehouse and root."""
    app = FastAPI(
        title="Reserving",
        description="Published IBNR reserves, champion history, pending approvals and pipeline health.",
        dependencies=[Depends(authenticated)],
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.warehouse = Warehouse(engine, artifact_root)

    @app.exception_handler(HTTPException)
    async def _login_page_for_browsers(request: Request, exc: HTTPException):
        """A browser without an Airflow session gets a page linking to the login, with the same 401/403 status."""
        if exc.status_code in (401, 403) and "text/html" in request.headers.get("accept", ""):
            return HTMLResponse(_login_page(request, exc), status_code=exc.status_code)
        return await http_exception_handler(request, exc)

    @app.exception_handler(DBAPIError)
    async def _warehouse_unavailable(request: Request, exc: DBAPIError):
        """An unreachable warehouse, or one without tables yet, is a 503 that says so (not a bare 500)."""
        detail = (
            f"the reserving warehouse cannot answer ({type(exc.orig).__name__}: {str(exc.orig).splitlines()[0]}); "
            "check the reserving_db connection and create the tables with: python -m include.reserving.schema"
        )
        return await http_exception_handler(request, HTTPException(status_code=503, detail=detail))

    @app.get("/", response_class=HTMLResponse, name="page")
    def page(request: Request, wh: WarehouseDep) -> HTMLResponse:
        return HTMLResponse(render_page(request, wh))

    @app.get("/api/reserves", name="reserves")
    def reserves(
        wh: WarehouseDep,
        valuation_date: Annotated[str | None, Query(description="A month end; default: the latest")] = None,
    ) -> dict[str, Any]:
        day = _date_or_400(valuation_date) if valuation_date else None
        try:
            return views.published_reserves(wh.engine, day)
        except views.NotFound as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None

    @app.get("/api/champion", name="champion")
    def champion(wh: WarehouseDep) -> dict[str, Any]:
        return views.champion(wh.engine)

    @app.get("/api/approvals/pending", name="pending_approvals")
    def pending(request: Request, wh: WarehouseDep) -> list[dict[str, Any]]:
        return [{**item, **_card_links(request, item)} for item in views.pending_approvals(wh.engine)]

    @app.get("/model-cards/{valuation_date}/{model_version}.{fmt}", name="model_card")
    def model_card(valuation_date: str, model_version: str, fmt: str, wh: WarehouseDep):
        day = _date_or_400(valuation_date)
        try:
            path = views.model_card_path(wh.engine, wh.artifact_root, day, model_version, fmt)
        except views.NotFound as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None
        media = "application/pdf" if fmt == "pdf" else "text/plain; charset=utf-8"
        return FileResponse(path, media_type=media, content_disposition_type="inline", filename=path.name)

    return app


# --- the page ------------------------------------------------------------------------------------------------------

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 24px; color: #1f2933; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #d9dee3; }
h3 { font-size: 14px; margin: 14px 0 6px; } .meta { color: #52606d; font-size: 13px; margin: 2px 0; }
table { border-collapse: collapse; font-size: 13px; margin: 6px 0 10px; }
th, td { padding: 4px 10px; border-bottom: 1px solid #e4e7eb; text-align: left; white-space: nowrap; }
th { background: #f5f7fa; font-weight: 600; } td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.subtotal td { font-weight: 600; background: #fafbfc; }
tr.total td { font-weight: 700; border-top: 2px solid #9aa5b1; }
.empty { color: #7b8794; font-style: italic; } .ok { color: #1f7a3d; } .bad { color: #b42318; font-weight: 600; }
code, pre { background: #f5f7fa; border: 1px solid #e4e7eb; border-radius: 4px; font-size: 12px; }
pre { padding: 8px; white-space: pre-wrap; word-break: break-all; margin: 4px 0; } code { padding: 1px 4px; }
.card { border: 1px solid #d9dee3; border-radius: 6px; padding: 10px 14px; margin: 8px 0; max-width: 1100px; }
.columns { display: flex; gap: 40px; flex-wrap: wrap; align-items: flex-start; }
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _money(value: float | None) -> str:
    return "" if value is None else f"{value:,.2f}"


def _table(headers: list[str], rows: list[list[str]], numeric: set[int], classes: list[str] | None = None) -> str:
    head = "".join(
        f'<th class="num">{_e(h)}</th>' if i in numeric else f"<th>{_e(h)}</th>" for i, h in enumerate(headers)
    )
    body = []
    for n, row in enumerate(rows):
        cls = f' class="{classes[n]}"' if classes and classes[n] else ""
        cells = "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(row))
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _card_links(request: Request, item: dict[str, Any]) -> dict[str, str]:
    version = quote(item["challenger_version"], safe="")
    base = str(request.url_for("page")).rstrip("/")
    folder = f"{base}/model-cards/{item['valuation_date']}"
    return {f"model_card_{fmt}": f"{folder}/{version}.{fmt}" for fmt in ("pdf", "md")}


def _reserves_section(wh: Warehouse) -> str:
    try:
        data = views.published_reserves(wh.engine)
    except views.NotFound as exc:
        return f'<h2>Published reserves</h2><p class="empty">{_e(exc)}.</p>'
    money_cols = ["latest_paid", "latest_incurred", "ultimate", "ibnr", "std_err"]
    headers = ["Line", "Origin", "Latest paid", "Latest incurred", "Ultimate", "IBNR", "Std error"]
    rows, classes = [], []
    for line in data["lines"]:
        for r in (r for r in data["rows"] if r["segment"] == line["segment"]):
            rows.append([_e(r["segment"]), _e(r["origin"]), *[_money(r[c]) for c in money_cols]])
            classes.append("")
        rows.append([f"{_e(line['segment'])} total", "", *[_money(line[c]) for c in money_cols[:-1]], ""])
        classes.append("subtotal")
    totals = [round(sum(line[c] or 0 for line in data["lines"]), 2) for c in money_cols[:-1]]
    rows.append(["All lines", "", *[_money(t) for t in totals], ""])
    classes.append("total")
    summary = _table(
        ["Line", "Ultimate", "IBNR"],
        [[_e(line["segment"]), _money(line["ultimate"]), _money(line["ibnr"])] for line in data["lines"]]
        + [["All lines", _money(totals[2]), _money(totals[3])]],
        {1, 2},
        [""] * len(data["lines"]) + ["total"],
    )
    meta = (
        f'<p class="meta">Valuation date <b>{_e(data["valuation_date"])}</b> · version {_e(data["version"])} '
        f"(current) · basis {_e(data['basis'])} · status {_e(data['status'])} · model "
        f"<code>{_e(data['model_version'])}</code> · published {_e(data['published_at'])} UTC · run "
        f"<code>{_e(data['run_id'])}</code></p>"
    )
    return (
        f"<h2>Published reserves</h2>{meta}<h3>IBNR by line</h3>{summary}"
        f"<h3>By line and origin</h3>{_table(headers, rows, {2, 3, 4, 5, 6}, classes)}"
    )


def _champion_section(wh: Warehouse) -> str:
    data = views.champion(wh.engine)
    current = data["champion"]
    if current is None:
        head = '<p class="empty">No champion yet: the first challenger needs an actuary\'s approval.</p>'
    else:
        head = (
            f'<p class="meta">Current champion <code>{_e(current["model_version"])}</code> · method '
            f"{_e(current['method'])} · fitted at {_e(current['trained_valuation_date'])} "
            f"({_e(current['basis'])})</p>"
        )
    if not data["history"]:
        return f'<h2>Champion</h2>{head}<p class="empty">No champion changes recorded.</p>'
    rows = [
        [
            _e(h["valuation_date"]),
            f"<code>{_e(h['model_version'])}</code>",
            f"<code>{_e(h['previous_version'] or '-')}</code>",
            _e(h["action"]),
            _e(h["approved_by"] or "-"),
            _e(h["changed_at"]),
        ]
        for h in reversed(data["history"])
    ]
    table = _table(["Valuation date", "Champion", "Previous", "Action", "Approved by", "Changed at (UTC)"], rows, set())
    return f"<h2>Champion</h2>{head}{table}"


def _approvals_section(request: Request, wh: Warehouse) -> str:
    pending = views.pending_approvals(wh.engine)
    if not pending:
        return '<h2>Pending approvals</h2><p class="empty">No challenger is waiting for approval.</p>'
    cards = []
    for item in pending:
        links = _card_links(request, item)
        cards.append(
            f'<div class="card"><b>Valuation {_e(item["valuation_date"])}</b>: challenger '
            f"<code>{_e(item['challenger_version'])}</code> to replace <code>{_e(item['champion_version'] or '-')}"
            f'</code><p class="meta">Backtest: {_e(item["reason"])}.</p>'
            f'<p class="meta">Model card: <a href="{_e(links["model_card_pdf"])}" target="_blank">PDF</a> · '
            f'<a href="{_e(links["model_card_md"])}" target="_blank">Markdown</a></p>'
            f'<p class="meta">Set the Airflow Variable (Admin → Variables) <code>{_e(item["variable_key"])}</code> '
            f"to approve:</p><pre>{_e(item['approve_value'])}</pre>"
            f'<p class="meta">or to reject:</p><pre>{_e(item["reject_value"])}</pre>'
            f'<p class="meta">CLI: <code>airflow variables set {_e(item["variable_key"])} '
            f"'{_e(item['approve_value'])}'</code></p></div>"
        )
    return f"<h2>Pending approvals</h2>{''.join(cards)}"


def _health_section(wh: Warehouse) -> str:
    runs = views.pipeline_health(wh.engine)
    if not runs:
        return '<h2>Pipeline health</h2><p class="empty">No pipeline runs recorded yet.</p>'
    rows = []
    for r in runs:
        state_class = "ok" if r["state"] == "success" else "bad" if r["state"] == "failed" else ""
        duration = "" if r["duration_seconds"] is None else f"{r['duration_seconds']:,.0f} s"
        rows.append(
            [
                _e(r["valuation_date"]),
                f'<span class="{state_class}">{_e(r["state"])}</span>',
                _e(r["started_at"]),
                _e(r["ended_at"]),
                duration,
                _e(r["failed_task"] or ""),
                f"<code>{_e(r['run_id'])}</code>",
            ]
        )
    headers = ["Valuation date", "State", "Started (UTC)", "Ended (UTC)", "Duration", "Failed task", "Run"]
    return f"<h2>Pipeline health</h2>{_table(headers, rows, {4})}"


def render_page(request: Request, wh: Warehouse) -> str:
    api = str(request.url_for("reserves"))
    body = (
        _reserves_section(wh)
        + _approvals_section(request, wh)
        + '<div class="columns"><div>'
        + _champion_section(wh)
        + "</div><div>"
        + _health_section(wh)
        + "</div></div>"
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Reserving</title>'
        f"<style>{STYLE}</style></head><body><h1>Reserving</h1>"
        f'<p class="meta">Monthly IBNR reserves. JSON: <a href="{_e(api)}">{_e(api)}</a></p>{body}</body></html>'
    )


def _login_page(request: Request, exc: HTTPException) -> str:
    try:
        from airflow.api_fastapi.app import get_auth_manager

        login = get_auth_manager().get_url_login(next_url=str(request.url))
    except Exception:  # no auth manager in this process: Airflow's UI root will send the user to its login
        login = "/"
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Reserving: log in</title>'
        f"<style>{STYLE}</style></head><body><h1>Reserving</h1><p>{_e(exc.detail)}: this page needs an Airflow "
        f'session. <a href="{_e(login)}" target="_top">Log in to Airflow</a> and open Reserving from the '
        "navigation.</p></body></html>"
    )
