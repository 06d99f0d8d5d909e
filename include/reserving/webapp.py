"""The Reserving view and read API, a FastAPI app that the plugin mounts in Airflow's api-server at ``/reserving``.

Routes (relative to the mount):

- ``GET /``: server-rendered page: latest published reserves by line and origin, champion history, pending approvals
  (model card links, the Variable key and value to set), pipeline health.
- ``GET /api/reserves?valuation_date=YYYY-MM-DD``: the current published version for V (default: the latest),
  its metadata, rows and totals by line and overall, each with case reserves, IBNR and unpaid. 400 if V is not a
  date or not a month end, 404 if nothing is published.
- ``GET /api/champion``, ``GET /api/approvals/pending``.
- ``GET /model-cards/{valuation_date}/{model_version}.{md|pdf}``: a challenger's model card, read only from under
  the artifact root. 400 for a bad date or a version id with anything but letters, digits, ``-_.`` (a NUL, ``..``),
  404 if there is no such card. No answer names a server path (the champion's artifact URI is left out).

Authentication (checked on Airflow 3.3.2, simple auth manager, see tests/plugins/): every route depends on
``requires_authenticated()`` from ``airflow.api_fastapi.core_api.security``, which accepts either

- an ``Authorization: Bearer <jwt>`` header (the token from ``POST /auth/token``; API clients, curl), or
- the ``_token`` cookie. The UI's login page stores the JWT from ``POST /auth/token`` in that cookie (path ``/``,
  or the ``[api] base_url`` path) and the api-server's JWTRefreshMiddleware refreshes it. The nav entry is an
  external view with a ``url_route``, so the UI renders ``/reserving/`` in an iframe on the same origin: the browser
  sends the cookie with the iframe's request, and links opened from the page (model cards) carry it too.

No token gives 401 ("Not authenticated"), a malformed or foreign token 403 ("Invalid JWT token"), an expired one
401. The page answers a browser without a session with a 401 page linking to Airflow's login. Both pages render from
autoescaped templates (``presentation/templates/page.html``, ``login.html``). The app itself does
no work until the first request: the warehouse (connection ``reserving_db``) and the artifact root are resolved then.
"""

from __future__ import annotations

import datetime as dt
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
from include.reserving.presentation.instruction import ApprovalInstruction
from include.reserving.presentation.templating import render

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
        except views.BadRequest as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
        except views.NotFound as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None
        media = "application/pdf" if fmt == "pdf" else "text/plain; charset=utf-8"
        return FileResponse(path, media_type=media, content_disposition_type="inline", filename=path.name)

    return app


# --- the page ------------------------------------------------------------------------------------------------------


def _card_links(request: Request, item: dict[str, Any]) -> dict[str, str]:
    version = quote(item["challenger_version"], safe="")
    base = str(request.url_for("page")).rstrip("/")
    folder = f"{base}/model-cards/{item['valuation_date']}"
    return {f"model_card_{fmt}": f"{folder}/{version}.{fmt}" for fmt in ("pdf", "md")}


def render_page(request: Request, wh: Warehouse) -> str:
    try:
        reserves, not_published = views.published_reserves(wh.engine), None
    except views.NotFound as exc:
        reserves, not_published = None, str(exc)
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
    return render(
        "page.html",
        api=str(request.url_for("reserves")),
        reserves=reserves,
        not_published=not_published,
        pending=pending,
        champion=views.champion(wh.engine),
        runs=views.pipeline_health(wh.engine),
    )


def _login_page(request: Request, exc: HTTPException) -> str:
    try:
        from airflow.api_fastapi.app import get_auth_manager

        login = get_auth_manager().get_url_login(next_url=str(request.url))
    except Exception:  # no auth manager in this process: Airflow's UI root will send the user to its login
        login = "/"
    return render("login.html", detail=exc.detail, login=login)
