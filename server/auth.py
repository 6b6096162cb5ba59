"""Bearer-key authentication for the entity endpoints, and who a request counts against.

Keys are compared in constant time, every accepted key is checked (so the time taken does
not tell which key nearly matched), and a key never reaches a log, not even as a digest that
a guess could be checked against offline: the rate limiter counts a valid key under its
position in ``API_KEYS`` and everything else under the client's address.
"""

from __future__ import annotations

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


def accepted_index(key: str) -> int | None:
    """The position of ``key`` among the accepted keys, or None; in constant time."""
    accepted: tuple[str, ...] = current_app.config["CRAFTSYNC"].api_keys
    matches = [hmac.compare_digest(key.encode(), candidate.encode()) for candidate in accepted]
    return matches.index(True) if any(matches) else None


def require_key() -> None:
    """Refuse the request with 401 unless it carries one of the accepted keys."""
    key = presented_key()
    if key is None:
        raise ApiError(401, "unauthorized", "Send 'Authorization: Bearer <key>'.")
    if accepted_index(key) is None:
        raise ApiError(401, "unauthorized", "The API key is not valid.")


def client_address() -> str:
    """The client's address (a trusted proxy's forwarded one: server/serve.py)."""
    return "addr:" + (request.remote_addr or "unknown")


def rate_limit_key() -> str:
    """Who a request counts against: a valid key (by its position), else the address."""
    key = presented_key()
    index = accepted_index(key) if key is not None else None
    return f"key:{index}" if index is not None else client_address()


def failed_authentication(response: object) -> bool:
    """Whether a response refused the key, which counts against the address's failures."""
    return getattr(response, "status_code", None) == 401
