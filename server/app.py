"""The API application factory."""

from __future__ import annotations

from flask import Flask, Response, request
from flask_limiter import Limiter
from sqlalchemy import Engine

from craftsync.server import errors
from craftsync.server.api import EntityConverter, bp, entities_bp
from craftsync.server.auth import client_address, failed_authentication, rate_limit_key
from craftsync.server.catalog import Catalog
from craftsync.server.config import ServerSettings
from craftsync.server.db import make_engine, migrate


def create_app(settings: ServerSettings | None = None, *, engine: Engine | None = None) -> Flask:
    """The API application for ``settings`` (default: from the environment).

    The schema is migrated to the newest revision before the first request.
    """
    settings = settings or ServerSettings.from_env()
    app = Flask(__name__)
    app.url_map.converters["entity"] = EntityConverter
    app.config["CRAFTSYNC"] = settings
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    engine = engine or make_engine(settings.database_url)
    migrate(engine)
    app.extensions["craftsync.engine"] = engine
    app.extensions["craftsync.catalog"] = Catalog.load(engine)
    errors.register(app)
    limiter = Limiter(
        rate_limit_key,
        app=app,
        storage_uri=settings.redis_url or "memory://",
        headers_enabled=True,
        key_prefix="craftsync-api",
    )
    # One budget per key across every entity endpoint, not one per endpoint.
    limiter.shared_limit(settings.rate_limit, scope="entities")(entities_bp)
    # Guessing keys: only refused keys count, per client address, whatever key each one tried.
    limiter.shared_limit(settings.failed_auth_limit, scope="failed-auth", key_func=client_address,
                         deduct_when=failed_authentication)(entities_bp)
    limiter.shared_limit(settings.open_limit, scope="open", key_func=client_address)(bp)
    app.register_blueprint(bp)
    app.register_blueprint(entities_bp)
    app.after_request(_strict_transport_security)
    return app


def _strict_transport_security(response: Response) -> Response:
    """Over HTTPS, tell browsers to use nothing else for this host for a year."""
    if request.scheme == "https":
        response.headers["Strict-Transport-Security"] = "max-age=31536000"
    return response
