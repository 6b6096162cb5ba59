"""Bearer-key authentication for the entity endpoints.

Keys are compared in constant time, every accepted key is checked (so the time taken does
not tell which key nearly matched), and a key is never logged: the rate limiter keys its
counters by a digest of it.
"""

from __future__ import annotations

import hashlib
import hmac

from flask import current_app, request

from craftsync.server.errors import ApiError


def presented_key() -> str | None:
    """The key in the request's ``Authorization: Bearer`` header, if any."""
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return None
    return key.strip()


def require_key() -> None:
    """Refuse the request with 401 unless it carries one of the accepted keys."""
    key = presented_key()
    accepted: tuple[str, ...] = current_app.config["CRAFTSYNC"].api_keys
    if key is None:
        raise ApiError(401, "unauthorized", "Send 'Authorization: Bearer <key>'.")
    matches = [hmac.compare_digest(key.encode(), candidate.encode()) for candidate in accepted]
    if not any(matches):
        raise ApiError(401, "unauthorized", "The API key is not valid.")


def rate_limit_key() -> str:
    """Who a request counts against: a digest of its key, else its address."""
    key = presented_key()
    if key is not None:
        return "key:" + hashlib.sha256(key.encode()).hexdigest()[:32]
    return "addr:" + (request.remote_addr or "unknown")
