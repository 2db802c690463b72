"""The Flask app factory: services come in through ``app.extensions``."""
from __future__ import annotations

from pathlib import Path

from flask import Flask
from flask.json.provider import DefaultJSONProvider

from .api import (admin, filters, forward, health, metrics, modality, origin, response_headers, status_page,
                  worklist)
from .api.errors import register_error_handlers
from .api import converters


class SpecOrderJSONProvider(DefaultJSONProvider):
    sort_keys = False       # answer in the spec's field order


def create_app(services) -> Flask:
    app = Flask("sensord", root_path=str(Path(__file__).parent))   # "sensord" is a namespace package
    app.config["MAX_CONTENT_LENGTH"] = services.settings.server.max_upload_mb << 20
    app.json = SpecOrderJSONProvider(app)
    # Every route answers with and without a trailing slash, and never by a
    # redirect: the vendor's SDK asks for `acquisition/`, and HttpClient drops
    # Authorization when it follows one (.NET Framework does not follow 308).
    app.url_map.strict_slashes = False
    # Nor is `//` merged by a redirect: an empty id (`/acquisition//info`) is a 404.
    app.url_map.merge_slashes = False
    converters.install(app)     # <row_id:...>: an id out of SQLite's range is a 404, not a 500
    app.extensions["sensord"] = services
    metrics.install(app)        # first: its clock starts before the checks below
    # Host and origin first: a request from a web page that may not reach us
    # is refused before any credentials are checked (no 401 for it to act on).
    origin.install(app)
    services.auth.install(app)
    response_headers.install(app)
    register_error_handlers(app)
    for api in (filters, modality, admin, forward, status_page, worklist, health, metrics):
        app.register_blueprint(api.bp)
    return app
