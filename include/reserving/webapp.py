"""The Reserving view and read API, a FastAPI app that the plugin mounts in Airflow's api-server at ``/reserving``.

Routes (relative to the mount):

- ``GET /?valuation_date=YYYY-MM-DD``: server-rendered page for V (default: the latest published): reserves by line
  and origin, the ranges of the unpaid, the analysis of change per line, a picker of the published valuation dates
  and the publication history, pending approvals (model card links, the Variable key and value to set), champion
  history and the health of every execution of every run (a failure stays visible after a later success) with
  links to each gate run's Data Docs. A V that is not a month end is a 400 page, one with nothing published a 404
  page, each saying why.
- ``GET /api/reserves?valuation_date=YYYY-MM-DD``: the current published version for V (default: the latest),
  its metadata, rows and totals by line and overall, each with case reserves, IBNR and unpaid, its ranges and its
  analysis of change. 400 if V is not a date or not a month end, 404 if nothing is published.
- ``GET /api/champion``, ``GET /api/approvals/pending``.
- ``GET /model-cards/{valuation_date}/{model_version}.{md|pdf}``: a challenger's model card, read only from under
  the artifact root. 400 for a bad date or a version id with anything but letters, digits, ``-_.`` (a NUL, ``..``),
  404 if there is no such card. No answer names a server path (the champion's artifact URI is left out).
- ``GET /data-docs/{valuation_date}/{run_id}/[page]``: a gate run's Great Expectations Data Docs, self-contained
  (see :mod:`include.reserving.quality.data_docs`): an index of the run's pages, then GX's pages without scripts or
  anything from a CDN, served only from inside that run's ``quality/data_docs`` folder (400 for a run id Airflow
  would not allow, 404 for anything outside the folder or missing). The gate's failure alert links here.

The warehouse (connection ``reserving_db``) and the artifact root are resolved on every request, not at import and
not once: an operator switching the connection sees the new warehouse at the next request, without a restart.

Authentication (checked on Airflow 3.3.2, simple auth manager, see tests/plugins/): every route depends on
``requires_authenticated()`` from ``airflow.api_fastapi.core_api.security``, which accepts either

- an ``Authorization: Bearer <jwt>`` header (the token from ``POST /auth/token``; API clients, curl), or
- the ``_token`` cookie. The UI's login page stores the JWT from ``POST /auth/token`` in that cookie (path ``/``,
  or the ``[api] base_url`` path) and the api-server's JWTRefreshMiddleware refreshes it. The nav entry is an
  external view with a ``url_route``, so the UI renders ``/reserving/`` in an iframe on the same origin: the browser
  sends the cookie with the iframe's request, and links opened from the page (model cards) carry it too.

No token gives 401 ("Not authenticated"), a malformed or foreign token 403 ("Invalid JWT token"), an expired one
401. The page answers a browser without a session with a 401 page linking to Airflow's login. The pages render from
autoescaped templates (``presentation/templates/page.html``, ``data_docs.html``, ``login.html``).
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass
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
from include.reserving.presentation.formatting import as_date
from include.reserving.presentation.instruction import ApprovalInstruction
from include.reserving.presentation.templating import render
from include.reserving.quality import data_docs

authenticated = requires_authenticated()  # one object, so tests can override it (dependency_overrides)
# Data Docs pages come from GX with values from the warehouse in them: no scripts, nothing from elsewhere.
DATA_DOCS_HEADERS = {"Content-Security-Policy": data_docs.CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff"}


@dataclass(frozen=True)
class Site:
    """What one request reads: the warehouse engine and the artifact root."""

    engine: Engine
    artifact_root: str


class Warehouse:
    """The warehouse and artifact root: given (tests), or resolved from the settings and the ``reserving_db``
    connection on every request, so that an operator's change of the connection is seen without restarting the
    api-server. One engine is kept per URL (its pool serves the requests); a new URL's engine replaces the old one.
    Nothing is resolved at import: plugin loading must not touch a database."""

    def __init__(self, engine: Engine | None = None, artifact_root: str | None = None) -> None:
        self._engine, self._artifact_root = engine, artifact_root
        self._engines: dict[str, Engine] = {}
        self._lock = threading.Lock()

    def current(self) -> Site:
        if self._engine is not None and self._artifact_root is not None:
            return Site(self._engine, self._artifact_root)
        from include.reserving.config import load_settings, warehouse_url

        settings = load_settings()
        return Site(
            self._engine or self._engine_for(warehouse_url(settings)), self._artifact_root or settings.artifact_root
        )

    def _engine_for(self, url: str) -> Engine:
        from include.reserving.warehouse.core import make_engine

        with self._lock:
            engine = self._engines.get(url)
            if engine is None:
                for old in self._engines.values():
                    old.dispose()  # requests still holding one of its connections finish on it
                engine = make_engine(url)
                self._engines = {url: engine}
            return engine


def _site(request: Request) -> Site:
    try:
        return request.app.state.warehouse.current()
    except ValueError as exc:  # the settings Variable or the connection cannot be used: say which and why
        raise HTTPException(status_code=503, detail=f"the Reserving view cannot find its warehouse: {exc}") from None


WarehouseDep = Annotated[Site, Depends(_site)]


def _date_or_400(raw: str) -> dt.date:
    try:
        return parse_valuation_date(raw)
    except ValueError as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from None


def create_app(engine: Engine | None = None, artifact_root: str | None = None) -> FastAPI:
    """The Reserving app; ``engine`` and ``artifact_root`` default to the configured warehouse and root."""
    app = FastAPI(
        title="Reserving",
        description=(
            "Published reserves (case reserves, IBNR, unpaid), champion history, pending approvals and pipeline health."
        ),
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
    def page(
        request: Request,
        wh: WarehouseDep,
        valuation_date: Annotated[str | None, Query(description="A published month end; default: the latest")] = None,
    ) -> HTMLResponse:
        try:
            day = parse_valuation_date(valuation_date) if valuation_date else None
        except ValueError as exc:
            return HTMLResponse(render_page(request, wh, None, str(exc), refused=True), status_code=400)
        return render_page_response(request, wh, day)

    @app.get("/api/reserves", name="reserves")
    def reserves(
        wh: WarehouseDep,
        valuation_date: Annotated[str | None, Query(description="A month end; default: the latest")] = None,
    ) -> dict[str, Any]:
        day = _date_or_400(valuation_date) if valuation_date else None
        return _or_4xx(views.published_reserves, wh.engine, day)

    @app.get("/api/champion", name="champion")
    def champion(wh: WarehouseDep) -> dict[str, Any]:
        return views.champion(wh.engine)

    @app.get("/api/approvals/pending", name="pending_approvals")
    def pending(request: Request, wh: WarehouseDep) -> list[dict[str, Any]]:
        return [{**item, **_card_links(request, item)} for item in views.pending_approvals(wh.engine)]

    @app.get("/model-cards/{valuation_date}/{model_version}.{fmt}", name="model_card")
    def model_card(valuation_date: str, model_version: str, fmt: str, wh: WarehouseDep):
        day = _date_or_400(valuation_date)
        path = _or_4xx(views.model_card_path, wh.engine, wh.artifact_root, day, model_version, fmt)
        media = "application/pdf" if fmt == "pdf" else "text/plain; charset=utf-8"
        return FileResponse(path, media_type=media, content_disposition_type="inline", filename=path.name)

    @app.get("/data-docs/{valuation_date}/{run_id}/", response_class=HTMLResponse, name="data_docs")
    def data_docs_index(valuation_date: str, run_id: str, wh: WarehouseDep) -> HTMLResponse:
        day = _date_or_400(valuation_date)
        found = _or_4xx(views.data_docs_pages, wh.artifact_root, day, run_id)
        page = render("data_docs.html", valuation_date=day, run_id=run_id, pages=found)
        return HTMLResponse(page, headers=DATA_DOCS_HEADERS)

    @app.get("/data-docs/{valuation_date}/{run_id}/{page:path}", name="data_docs_page")
    def data_docs_page(valuation_date: str, run_id: str, page: str, wh: WarehouseDep):
        if page in ("", "index.html"):  # GX's index needs its CDN scripts: its pages link back to the view's
            return data_docs_index(valuation_date, run_id, wh)
        day = _date_or_400(valuation_date)
        path = _or_4xx(views.data_docs_file, wh.artifact_root, day, run_id, page)
        if path.suffix.lower() == ".html":
            html = data_docs.self_contained(path.read_text(encoding="utf-8", errors="replace"))
            return HTMLResponse(html, headers=DATA_DOCS_HEADERS)
        return FileResponse(path, headers=DATA_DOCS_HEADERS)

    return app


def _or_4xx(read, *args):
    """``read(*args)``, its NotFound a 404 and its BadRequest a 400 (with the reason, never a server path)."""
    try:
        return read(*args)
    except views.BadRequest as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from None
    except views.NotFound as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None


# --- the page ------------------------------------------------------------------------------------------------------


def _card_links(request: Request, item: dict[str, Any]) -> dict[str, str]:
    version = quote(item["challenger_version"], safe="")
    base = str(request.url_for("page")).rstrip("/")
    folder = f"{base}/model-cards/{item['valuation_date']}"
    return {f"model_card_{fmt}": f"{folder}/{version}.{fmt}" for fmt in ("pdf", "md")}


def render_page_response(request: Request, wh: Site, valuation_date: dt.date | None) -> HTMLResponse:
    """The page for V (default: the latest published); a V with nothing published is a 404 page saying so."""
    try:
        reserves = views.published_reserves(wh.engine, valuation_date)
    except views.NotFound as exc:
        asked = valuation_date is not None  # nothing published yet is no error of the request
        return HTMLResponse(render_page(request, wh, None, str(exc), refused=asked), status_code=404 if asked else 200)
    return HTMLResponse(render_page(request, wh, reserves))


def render_page(
    request: Request, wh: Site, reserves: dict[str, Any] | None, problem: str | None = None, refused: bool = False
) -> str:
    """The page: ``reserves`` of one valuation date, or ``problem`` saying why none are shown (``refused``: the
    request's fault, a 400 or 404)."""
    pending = [
        {
            **item,
            **_card_links(request, item),
            "approval": ApprovalInstruction(
                dt.date.fromisoformat(item["valuation_date"]),
                item["challenger_version"],
                item["approval_code"],
                tuple(line["segment"] for line in item["lines"]),
            ),
        }
        for item in views.pending_approvals(wh.engine)
    ]
    history = views.publication_history(wh.engine)
    page_url = str(request.url_for("page"))
    runs = [
        {
            **run,
            "data_docs": (
                str(request.url_for("data_docs", valuation_date=run["valuation_date"], run_id=run["run_id"]))
                if views.has_data_docs(wh.artifact_root, run["valuation_date"], run["run_id"])
                else None
            ),
        }
        for run in views.pipeline_health(wh.engine)
    ]
    return render(
        "page.html",
        api=str(request.url_for("reserves")) + (f"?valuation_date={reserves['valuation_date']}" if reserves else ""),
        page_url=page_url,
        reserves=reserves,
        movements=views.movement_table(reserves["movements"], as_date(reserves["valuation_date"]))
        if reserves
        else None,
        problem=problem,
        refused=refused,
        valuations=sorted({h["valuation_date"] for h in history if h["is_current"]}, reverse=True),
        history=history,
        pending=pending,
        champion=views.champion(wh.engine),
        runs=runs,
    )


def _login_page(request: Request, exc: HTTPException) -> str:
    try:
        from airflow.api_fastapi.app import get_auth_manager

        login = get_auth_manager().get_url_login(next_url=str(request.url))
    except Exception:  # no auth manager in this process: Airflow's UI root will send the user to its login
        login = "/"
    return render("login.html", detail=exc.detail, login=login)
