"""Serving the API with waitress, a production WSGI server that also runs on Windows."""

from __future__ import annotations

import logging

from waitress import serve as waitress_serve

from craftsync.server.app import create_app
from craftsync.server.config import ServerSettings
from craftsync.server.demo import seed

#: Worker threads of the WSGI server; the database pool is sized to match.
THREADS = 8


def serve(settings: ServerSettings, *, host: str = "127.0.0.1", port: int = 8000, demo: bool = False) -> None:
    """Serve the API until interrupted; with ``demo``, seed an empty database first."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # each start's migration check is routine
    app = create_app(settings)
    if demo and seed(app.extensions["craftsync.engine"], app.extensions["craftsync.catalog"]):
        print("Seeded the demo database.", flush=True)
    print(f"CraftSync API on http://{host}:{port}/api (database: {_safe_url(settings.database_url)})", flush=True)
    waitress_serve(app, host=host, port=port, threads=THREADS, ident="craftsync", clear_untrusted_proxy_headers=True)


def _safe_url(url: str) -> str:
    """The database URL without its password, for logs."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
