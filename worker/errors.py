"""The worker's exceptions: every failure of a sync leaves the worker as a ``SyncError``.

Foreign exceptions (httpx, sqlite3, SQLAlchemy, redis) are translated where the worker
meets the library, with ``raise X(...) from exc``, so callers catch only these::

    SyncError
    ├── RemoteError                 talking to the remote API (worker/remote.py)
    │   ├── RemoteUnavailable       network error, timeout, TLS failure, 5xx (after retries)
    │   ├── AuthenticationFailed    401: the API key was refused
    │   ├── RateLimited             429, still after retries; carries ``retry_after``
    │   ├── RequestRejected         any other 4xx; carries ``status``, ``code``, ``message``
    │   └── ProtocolError           the answer is not what the contract says (§5)
    ├── LocalStoreError             the local SQLite database failed
    └── ConfigurationError          the settings are unusable

Messages are one line, name the URL or file concerned, and never hold the API key.
"""

from __future__ import annotations


class SyncError(Exception):
    """Raised for any failure of a sync."""


class RemoteError(SyncError):
    """Raised for any failure talking to the remote API."""

    #: Whether sending the same request again later may succeed.
    retryable: bool = False


class RemoteUnavailable(RemoteError):
    """Raised when the server cannot be reached or answers 5xx (after the retries)."""

    def __init__(self, message: str, *, retryable: bool = True, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        #: Seconds the server asked us to wait (``Retry-After``), if it said.
        self.retry_after = retry_after


class AuthenticationFailed(RemoteError):
    """Raised when the server refuses the API key (401)."""


class RateLimited(RemoteError):
    """Raised when the server still answers 429 after the retries."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        #: Seconds the server asked us to wait (``Retry-After``), if it said.
        self.retry_after = retry_after


class RequestRejected(RemoteError):
    """Raised when the server refuses a request with a 4xx other than 401 and 429."""

    def __init__(self, summary: str, *, status: int, code: str, message: str) -> None:
        super().__init__(summary)
        self.status = status
        #: The ``error`` field of the JSON error body (``"unknown"`` when there was none).
        self.code = code
        #: The ``message`` field of the JSON error body.
        self.message = message


class ProtocolError(RemoteError):
    """Raised when an answer is not what the contract says: not JSON, missing keys."""


class LocalStoreError(SyncError):
    """Raised when the local SQLite database fails."""


class ConfigurationError(SyncError):
    """Raised when the settings cannot work (a bad URL, a missing CA bundle, ...)."""
