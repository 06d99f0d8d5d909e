"""The Reserving plugin inside a real ``airflow api-server`` (simple auth manager): every route refuses a caller
without a valid token and serves one with it (bearer header or the UI's ``_token`` cookie); headless Chromium logs
in through Airflow's own login page and renders the view, alone and inside the Airflow UI, saving screenshots.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote, unquote

import pytest

from include.reserving import artifacts, schema
from include.reserving.publish import reserve_rows
from include.reserving.warehouse.core import make_engine
from include.reserving.warehouse.reserves import publish_reserves
from tests.plugins.conftest import PENDING_RUN, PROJECT, V2, _model_output

pytestmark = pytest.mark.slow

ARTIFACTS = PROJECT / "test-artifacts"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
]


def _routes(server) -> list[str]:
    return [
        "/reserving/",
        "/reserving/api/reserves",
        "/reserving/api/reserves?valuation_date=2024-01-31",
        "/reserving/api/champion",
        "/reserving/api/approvals/pending",
        f"/reserving/model-cards/2024-02-29/{server.book.challenger}.pdf",
        "/reserving/?valuation_date=2024-01-31",
        f"{DOCS}/",
        f"{DOCS}/{_a_validation_page(server)}",
    ]


DOCS = f"/reserving/data-docs/2024-02-29/{quote(PENDING_RUN, safe='')}"


def _a_validation_page(server) -> str:
    """The failed validation's GX page, relative to the run's Data Docs folder."""
    docs = Path(artifacts.run_dir(str(server.book.artifact_root), V2, PENDING_RUN), "quality", "data_docs")
    (page,) = (docs / "validations").glob("reserving_snapshot_claims_v*[0-9]/*/*/*.html")
    return page.relative_to(docs).as_posix()


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_every_route_needs_an_authenticated_airflow_user(api_server):
    token = api_server.token()
    for route in _routes(api_server):
        url = api_server.base + route
        status, body = _get(url)
        assert status == 401, (route, status, body[:200])
        assert json.loads(body) == {"detail": "Not authenticated"}
        status, body = _get(url, {"Authorization": "Bearer not-a-jwt"})
        assert status == 403, (route, status, body[:200])
        status, _ = _get(url, {"Cookie": "_token=not-a-jwt"})
        assert status in (401, 403), route
        assert _get(url, {"Authorization": f"Bearer {token}"})[0] == 200, route
        assert _get(url, {"Cookie": f"_token={token}"})[0] == 200, route  # how the UI's session arrives


def test_served_numbers_and_the_registered_view(api_server):
    auth = {"Authorization": f"Bearer {api_server.token()}"}
    status, body = _get(api_server.base + "/reserving/api/reserves", auth)
    reserves = json.loads(body)
    result, rows = api_server.book.published[V2]
    assert (status, reserves["version"], reserves["unpaid_total"]) == (200, 2, result.unpaid_total)
    for column in ("case_reserve", "ibnr", "unpaid"):
        assert [r[column] for r in reserves["rows"]] == rows.sort_values(["segment", "origin"])[column].tolist()
    assert [(r["origin"], r["origin_start"]) for r in reserves["rows"]][:2] == [
        ("2023Q1", "2023-01-01"),
        ("2023Q2", "2023-04-01"),
    ]
    status, body = _get(api_server.base + "/reserving/api/reserves?valuation_date=2024-02-28", auth)
    assert status == 400 and "not a month end" in json.loads(body)["detail"]

    status, body = _get(api_server.base + "/api/v2/plugins", auth)
    plugin = next(p for p in json.loads(body)["plugins"] if p["name"] == "reserving")
    assert plugin["fastapi_apps"][0]["url_prefix"] == "/reserving"
    assert plugin["external_views"][0]["href"] == "/reserving/"
    assert _get(api_server.base + "/plugin/reserving")[0] == 200  # the UI route that frames the view


# --- the browser -----------------------------------------------------------------------------------------------


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("headless Chromium is not installed (Debian: apt-get install -y chromium)")
    return found


class DevTools:
    """The few Chrome DevTools Protocol calls the test needs, over the page target's websocket."""

    def __init__(self, ws_url: str) -> None:
        from websockets.sync.client import connect

        self.ws = connect(ws_url, max_size=None, open_timeout=30)
        self.next_id = 0

    def call(self, method: str, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=60))
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def evaluate(self, expression: str):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.evaluate(expression):
                return
            time.sleep(0.25)
        location = self.evaluate("location.href")
        raise AssertionError(f"timed out waiting for {expression!r} at {location}")

    def open(self, url: str) -> None:
        """Navigate and wait until the new document has loaded (the old one is marked, so it cannot pass)."""
        self.evaluate("window.__previousDocument = true")
        self.call("Page.navigate", url=url)
        self.wait_for("!window.__previousDocument && document.readyState === 'complete'")

    def screenshot(self, path: Path, full_page: bool = False) -> None:
        params = {"format": "png"}
        if full_page:
            size = self.call("Page.getLayoutMetrics")["cssContentSize"]
            params |= {"captureBeyondViewport": True, "clip": {**{k: size[k] for k in "xy"}, "scale": 1}}
            params["clip"] |= {"width": 1400, "height": max(1000, size["height"])}
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", **params)["data"]))

    def close(self) -> None:
        self.ws.close()


@pytest.fixture
def browser(tmp_path):
    """Headless Chromium with a fresh profile and the DevTools protocol on a local port; killed afterwards."""
    profile = tmp_path / "chromium-profile"
    process = subprocess.Popen(
        [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    devtools = None
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not port_file.exists() or not port_file.read_text().strip():
            assert process.poll() is None and time.monotonic() < deadline, "Chromium did not start"
            time.sleep(0.2)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as response:
            page = next(t for t in json.loads(response.read()) if t["type"] == "page")
        devtools = DevTools(page["webSocketDebuggerUrl"])
        devtools.call("Page.enable")
        yield devtools
    finally:
        if devtools is not None:
            devtools.close()
        if process.poll() is None:
            os.killpg(process.pid, 15)
            process.wait(timeout=30)


def test_the_view_renders_in_chromium_after_an_airflow_login(api_server, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    base = api_server.base

    browser.open(f"{base}/reserving/")  # no session yet: the page says so and links to the login
    browser.wait_for("document.body.innerText.includes('Log in to Airflow')")

    # Airflow's own login page: it posts to /auth/token and keeps the JWT in the _token cookie, then follows `next`.
    browser.open(f"{base}/auth/login?next={base}/reserving/")
    browser.wait_for("!!document.querySelector('input[name=password]')")
    for field, value in (("username", api_server.username), ("password", api_server.password)):
        browser.evaluate(f"document.querySelector('input[name={field}]').focus()")
        browser.call("Input.insertText", text=value)
    browser.wait_for("!document.querySelector('button[type=submit]').disabled")
    browser.evaluate("document.querySelector('button[type=submit]').click()")
    browser.wait_for("location.pathname === '/reserving/' && document.readyState === 'complete'")
    text = browser.evaluate("document.body.innerText")
    assert "Published reserves" in text and "reserving_approval__2024-02-29" in text, text[:500]
    cookies = browser.call("Network.getCookies", urls=[base + "/reserving/"])["cookies"]
    assert [c["name"] for c in cookies] == ["_token"]
    shot = ARTIFACTS / "reserving_view.png"
    browser.screenshot(shot, full_page=True)
    assert shot.stat().st_size > 20_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Inside the Airflow UI: the nav entry frames /reserving/ on the same origin, so the cookie reaches it too.
    browser.open(f"{base}/plugin/reserving")
    frame_text = "document.querySelector('iframe')?.contentDocument?.body?.innerText ?? ''"
    browser.wait_for(f"({frame_text}).includes('Published reserves')")
    time.sleep(1)  # let the UI finish painting its navigation
    ui_shot = ARTIFACTS / "reserving_in_airflow_ui.png"
    browser.screenshot(ui_shot)
    assert ui_shot.stat().st_size > 20_000

    # The gate's Data Docs, opened from the health table, render from this server alone (no CDN reachable or asked).
    browser.open(f"{base}/reserving/")
    links = "[...document.querySelectorAll('a')].filter(a => a.textContent === 'Data Docs').map(a => a.href)"
    assert {unquote(href) for href in browser.evaluate(links)} == {unquote(f"{base}{DOCS}/")}
    browser.open(f"{base}{DOCS}/")
    assert "reserving_snapshot_claims_v2" in browser.evaluate("document.body.innerText")
    browser.open(f"{base}{DOCS}/{_a_validation_page(api_server)}")
    text = browser.evaluate("document.body.innerText")
    assert "claimant_age" in text and "Unsuccessful Expectations" in text, text[:500]
    elsewhere = "performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith(location.origin))"
    assert browser.evaluate(elsewhere) == []
    docs_shot = ARTIFACTS / "reserving_data_docs.png"
    browser.screenshot(docs_shot)
    assert docs_shot.stat().st_size > 20_000


def test_bad_paths_get_4xx_and_no_server_path_through_the_real_server(api_server):
    """The in-process tests (test_reserving_view) cover the cases; this checks the api-server's stack passes them on."""
    auth = {"Authorization": f"Bearer {api_server.token()}"}
    root = str(api_server.book.artifact_root)
    for path, want in [
        (f"/reserving/model-cards/2024-02-29/{api_server.book.challenger}%00.md", 400),
        ("/reserving/model-cards/2024-02-29/...md", 400),
        ("/reserving/api/reserves?valuation_date=%00", 400),
    ]:
        status, body = _get(api_server.base + path, auth)
        assert status == want and root not in body.decode("utf-8", "replace"), (path, status, body[:300])
    status, body = _get(api_server.base + "/reserving/api/champion", auth)
    assert status == 200 and "artifact_uri" not in json.loads(body)["champions"][0] and root not in body.decode()


def test_switching_reserving_db_is_seen_without_a_restart(api_server, tmp_path):
    """An operator points reserving_db at another warehouse (a run waits there, and March is published): the next
    request reads it; pointed back, the first warehouse answers again. The api-server keeps running throughout."""
    other = tmp_path / "other-warehouse.db"
    engine = make_engine(f"sqlite:///{other}")
    schema.create_all(engine)
    march = publish_reserves(
        engine, dt.date(2024, 3, 31), "scheduled__2024-04-01T00:00:00+00:00", reserve_rows(*_model_output(1.2)), "m-cl"
    )
    engine.dispose()
    auth = {"Authorization": f"Bearer {api_server.token()}"}

    def latest() -> tuple[str, float, int]:
        status, body = _get(api_server.base + "/reserving/api/reserves", auth)
        assert status == 200, body[:300]
        reserves = json.loads(body)
        pending = json.loads(_get(api_server.base + "/reserving/api/approvals/pending", auth)[1])
        return reserves["valuation_date"], reserves["unpaid_total"], len(pending)

    first = api_server.book.published[V2][0]
    assert latest() == ("2024-02-29", first.unpaid_total, 1)
    try:
        api_server.point_warehouse_at(str(other))
        assert latest() == ("2024-03-31", march.unpaid_total, 0)
        status, body = _get(api_server.base + "/reserving/?valuation_date=2024-03-31", auth)
        assert status == 200 and "Valuation date <b>2024-03-31</b>" in body.decode()
    finally:
        api_server.point_warehouse_at(api_server.book.url.removeprefix("sqlite:///"))
    assert latest() == ("2024-02-29", first.unpaid_total, 1)


def test_the_page_honours_valuation_date(api_server):
    auth = {"Authorization": f"Bearer {api_server.token()}", "Accept": "text/html"}
    january = api_server.book.published[dt.date(2024, 1, 31)][0]
    status, body = _get(api_server.base + "/reserving/?valuation_date=2024-01-31", auth)
    page = body.decode()
    assert status == 200 and "Valuation date <b>2024-01-31</b> · version 1 (current)" in page
    assert f"{january.unpaid_total:,.2f}" in page and '<option value="2024-01-31" selected>' in page
    status, body = _get(api_server.base + "/reserving/?valuation_date=2023-12-31", auth)
    assert status == 404 and "no reserves are published for valuation date 2023-12-31" in body.decode()
    status, body = _get(api_server.base + "/reserving/?valuation_date=2024-01-30", auth)
    assert status == 400 and "2024-01-30 is not a month end: use a month end such as 2024-01-31" in body.decode()


def test_data_docs_are_served_self_contained_only_to_an_authenticated_user(api_server):
    """The gate's Data Docs through the api-server: no session, no page (a browser is sent to the login); with one,
    the index and GX's pages arrive without a script or anything from another server, and nothing outside the run's
    Data Docs folder can be reached."""
    index_url = f"{api_server.base}{DOCS}/"
    status, body = _get(index_url, {"Accept": "text/html"})
    assert status == 401 and "Log in to Airflow" in body.decode()
    auth = {"Authorization": f"Bearer {api_server.token()}"}
    status, body = _get(index_url, auth)
    index = body.decode()
    page = _a_validation_page(api_server)
    assert status == 200 and f'href="{page}"' in index and "failed" in index
    status, body = _get(f"{api_server.base}{DOCS}/{page}", auth)
    html = body.decode()
    assert status == 200 and "claimant_age" in html
    assert "<script" not in html and "cdn" not in html.lower() and "https://" not in html.split("</head>")[0]
    for path in (f"{DOCS}/..%2F..%2F..%2Fwarehouse.db", f"{DOCS}/%2E%2E/%2E%2E/model_card.md", f"{DOCS}/x%00.html"):
        status, body = _get(api_server.base + path, auth)
        assert status in (400, 404) and str(api_server.book.artifact_root) not in body.decode(), (path, status)
