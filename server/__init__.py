"""The reference remote REST API in front of the central SQL database.

``create_app`` (in ``server.app``) builds the Flask application; ``craftsync server``
serves it with waitress. It is loaded on first use, so that the sync client, which shares
``server.records`` (the wire format), does not import Flask and the rest of the server.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from craftsync.server.app import create_app

        return create_app
    raise AttributeError(f"module 'server' has no attribute {name!r}")
