"""The Reserving plugin: registers the Reserving view and read API (logic in include/reserving/webapp.py)."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from include.reserving.quality.data_docs import VIEW_PREFIX
from include.reserving.webapp import create_app


class ReservingPlugin(AirflowPlugin):
    name = "reserving"
    fastapi_apps = [{"name": "reserving", "app": create_app(), "url_prefix": VIEW_PREFIX}]
    external_views = [
        {
            "name": "Reserving",
            "href": f"{VIEW_PREFIX}/",
            "url_route": "reserving",  # embedded in the UI at /plugin/reserving (same origin: the session cookie)
            "destination": "nav",
            "category": "browse",
        }
    ]
