"""Serving the API: with waitress, a production WSGI server that also runs on Windows; over
HTTPS with cheroot (CherryPy's server, pure Python too), because waitress speaks plain HTTP only
and its event loop cannot carry TLS handshakes.
"""

from __future__ import annotations

import logging

from waitress import serve as waitress_serve

from craftsync.server.app import create_app
from craftsync.server.config import ServerConfigError, ServerSettings
from craftsync.server.demo import seed

#: Worker threads of the WSGI server; the database pool is sized to match.
THREADS = 8
#: Open connections waitress keeps before it stops accepting more. Connections that are still
#: sending their request cost a buffer, not a thread, so hundreds of slow clients leave room
#: for normal requests (a reverse proxy in front does better still: docs/SECURITY.md).
CONNECTION_LIMIT = 1000
#: Seconds a connection may stay silent before it is closed, and how often that is checked.
CHANNEL_TIMEOUT_S = 20
CLEANUP_INTERVAL_S = 5


def serve(settings: ServerSettings, *, host: str = "127.0.0.1", port: int = 8000, demo: bool = False,
          certfile: str | None = None, keyfile: str | None = None) -> None:
    """Serve the API until interrupted; with ``demo``, seed an empty database first; with
    ``certfile`` and ``keyfile``, over HTTPS."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # each start's migration check is routine
    app = create_app(settings)
    if demo and seed(app.extensions["craftsync.engine"], app.extensions["craftsync.catalog"]):
        print("Seeded the demo database.", flush=True)
    scheme = "https" if certfile else "http"
    print(f"CraftSync API on {scheme}://{host}:{port}/api (database: {_safe_url(settings.database_url)})", flush=True)
    if certfile:
        _serve_https(app, settings, host, port, certfile, keyfile or certfile)
        return
    # Forwarded addresses are believed from the named proxy only; waitress drops them otherwise.
    proxy = {"trusted_proxy": settings.trusted_proxy, "trusted_proxy_headers": "x-forwarded-for x-forwarded-proto"}
    waitress_serve(
        app, host=host, port=port, threads=THREADS, ident="craftsync", clear_untrusted_proxy_headers=True,
        **(proxy if settings.trusted_proxy else {}),
        connection_limit=CONNECTION_LIMIT, channel_timeout=CHANNEL_TIMEOUT_S, cleanup_interval=CLEANUP_INTERVAL_S,
        asyncore_use_poll=True,  # select() cannot watch more than about a thousand sockets
        # Refuse an oversized body on its declared length, before buffering it (>=, hence the +1).
        max_request_body_size=settings.max_body_bytes + 1,
    )


def _serve_https(app: object, settings: ServerSettings, host: str, port: int, certfile: str, keyfile: str) -> None:
    """Serve ``app`` over HTTPS with cheroot until interrupted."""
    from cheroot.ssl.builtin import BuiltinSSLAdapter
    from cheroot.wsgi import Server

    try:
        adapter = BuiltinSSLAdapter(certfile, keyfile)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise ServerConfigError(f"cannot use the certificate {certfile} with the key {keyfile}: "
                                f"{getattr(exc, 'strerror', None) or exc}") from exc
    server = Server((host, port), app, numthreads=THREADS, server_name="craftsync", timeout=CHANNEL_TIMEOUT_S,
                    request_queue_size=64)
    server.max_request_body_size = settings.max_body_bytes
    server.ssl_adapter = adapter
    try:
        server.start()
    finally:
        server.stop()


def _safe_url(url: str) -> str:
    """The database URL without its password, for logs."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
