"""The server's settings, read once at the edge (CLI or ``create_app``) and passed down."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

#: Accepted when ``DATABASE_URL`` is unset: a file next to where the server runs.
DEFAULT_DATABASE_URL: Final = "sqlite:///craftsync-server.db"
#: Per-key request budget; generous enough for a bulk import of 5,000-record batches.
DEFAULT_RATE_LIMIT: Final = "1200/minute"
#: The largest request body accepted (16 MiB).
MAX_BODY_BYTES: Final = 16 * 1024 * 1024
#: Failed authentications one client address may make before it is refused for a while.
DEFAULT_FAILED_AUTH_LIMIT: Final = "30/minute"
#: Per-address budget of the endpoints that need no key (health, OpenAPI document).
DEFAULT_OPEN_LIMIT: Final = "6000/minute"
#: Shorter keys can be guessed; the server refuses to start with one.
MIN_KEY_LENGTH: Final = 16


class ServerConfigError(ValueError):
    """A setting the server cannot start with; the message is one line for the operator."""


@dataclass(frozen=True)
class ServerSettings:
    """Everything the reference server needs to know about its surroundings."""

    database_url: str = DEFAULT_DATABASE_URL
    api_keys: tuple[str, ...] = ()
    rate_limit: str = DEFAULT_RATE_LIMIT
    #: Shared storage for rate-limit counters across server processes; memory when None.
    redis_url: str | None = None
    max_body_bytes: int = MAX_BODY_BYTES
    failed_auth_limit: str = DEFAULT_FAILED_AUTH_LIMIT
    open_limit: str = DEFAULT_OPEN_LIMIT
    #: The address of a reverse proxy whose X-Forwarded-For and X-Forwarded-Proto are believed.
    trusted_proxy: str | None = None
    extra: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        short = sum(len(key) < MIN_KEY_LENGTH for key in self.api_keys)
        if short:
            raise ServerConfigError(
                f"{short} of the API_KEYS is shorter than {MIN_KEY_LENGTH} characters and could be guessed: "
                "use long random keys, e.g. from `python -c \"import secrets; print(secrets.token_urlsafe(24))\"`."
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServerSettings:
        """Settings from ``DATABASE_URL``, ``API_KEYS``, ``RATE_LIMIT``, ``FAILED_AUTH_LIMIT``,
        ``OPEN_LIMIT``, ``REDIS_URL`` and ``TRUSTED_PROXY``."""
        env = os.environ if environ is None else environ
        keys = tuple(k.strip() for k in env.get("API_KEYS", "").split(",") if k.strip())
        return cls(
            database_url=env.get("DATABASE_URL") or DEFAULT_DATABASE_URL,
            api_keys=keys,
            rate_limit=env.get("RATE_LIMIT") or DEFAULT_RATE_LIMIT,
            redis_url=env.get("REDIS_URL") or None,
            failed_auth_limit=env.get("FAILED_AUTH_LIMIT") or DEFAULT_FAILED_AUTH_LIMIT,
            open_limit=env.get("OPEN_LIMIT") or DEFAULT_OPEN_LIMIT,
            trusted_proxy=env.get("TRUSTED_PROXY") or None,
        )
