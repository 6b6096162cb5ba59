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


@dataclass(frozen=True)
class ServerSettings:
    """Everything the reference server needs to know about its surroundings."""

    database_url: str = DEFAULT_DATABASE_URL
    api_keys: tuple[str, ...] = ()
    rate_limit: str = DEFAULT_RATE_LIMIT
    #: Shared storage for rate-limit counters across server processes; memory when None.
    redis_url: str | None = None
    max_body_bytes: int = MAX_BODY_BYTES
    extra: Mapping[str, object] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServerSettings:
        """Settings from ``DATABASE_URL``, ``API_KEYS``, ``RATE_LIMIT`` and ``REDIS_URL``."""
        env = os.environ if environ is None else environ
        keys = tuple(k.strip() for k in env.get("API_KEYS", "").split(",") if k.strip())
        return cls(
            database_url=env.get("DATABASE_URL") or DEFAULT_DATABASE_URL,
            api_keys=keys,
            rate_limit=env.get("RATE_LIMIT") or DEFAULT_RATE_LIMIT,
            redis_url=env.get("REDIS_URL") or None,
        )
