"""The Reserving plugin: registers the Reserving view and read API (logic in include/reserving/webapp.py)."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from include.reserving.webapp import create_app


class ReservingPlugin(AirflowPlugin):
    name = "reserving"
    fastapi_apps = [{"name": "reserving", "app": create_app(), "url_prefix": "/reserving"}]
    external_views = [
        {
            "name": "Reserving",
            "href": "/reserving/",
            "url_route": "reserving",  # embedded in the UI at /plugin/reserving (same origin: the session cookie)
            "destination": "nav",
            "category": "browse",
        }
    ]
