"""The Flask app factory: services come in through ``app.extensions``."""
from __future__ import annotations

from flask import Flask

from . import admin_api, filters_api, forward_api, modality_api, status_page
from .errors import register_error_handlers


def create_app(services) -> Flask:
    app = Flask("sensord")
    app.config["MAX_CONTENT_LENGTH"] = services.settings.server.max_upload_mb << 20
    app.json.sort_keys = False          # answer in the spec's field order
    app.extensions["sensord"] = services
    services.auth.install(app)
    register_error_handlers(app)
    app.register_blueprint(filters_api.bp)
    app.register_blueprint(modality_api.bp)
    app.register_blueprint(admin_api.bp)
    app.register_blueprint(forward_api.bp)
    app.register_blueprint(status_page.bp)
    return app
