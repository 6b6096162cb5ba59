"""The worker's exceptions: every failure of a sync leaves the worker as a ``SyncError``.

Foreign exceptions are translated at one boundary each, with ``raise X(...) from exc``, so
callers catch only these: httpx in ``RemoteClient._exchange`` (worker/remote.py), sqlite3
and SQLAlchemy in ``LocalStore.execute`` and ``migrate`` (worker/store.py), redis in
``broker_errors`` (worker/broker.py)::

    SyncError
    ├── RemoteError                 talking to the remote API (worker/remote.py)
    │   ├── RemoteUnavailable       network error, timeout, TLS failure, 5xx (after retries)
    │   ├── AuthenticationFailed    401: the API key was refused
    │   ├── RateLimited             429, still after retries; carries ``retry_after``
    │   ├── RequestRejected         any other 4xx; carries ``status``, ``code``, ``message``
    │   └── ProtocolError           the answer is not what the contract says (§5)
    ├── LocalStoreError             the local SQLite database failed (worker/store.py)
    │   ├── DiskFull                the disk holding the file is full
    │   ├── DatabaseReadOnly        the file (or its drive) cannot be written
    │   ├── DatabaseLocked          another program held the file locked past the busy timeout
    │   ├── DatabaseDamaged         the file is corrupt: CraftSync leaves it as it is
    │   └── DatabaseUnreachable     the file cannot be opened, or the disk fails to read or write
    ├── BrokerUnavailable           the Redis broker cannot be reached (worker/broker.py)
    ├── EntityBusy                  another run holds the entity's lock (worker/queue.py)
    ├── ConflictNotFound            no open conflict has the id (worker/conflicts.py)
    ├── InvalidResolution           the record chosen for a conflict is not valid (worker/conflicts.py)
    └── ConfigurationError          the settings are unusable

Messages are one line, name the URL or file concerned, and never hold the API key. Each
error also carries ``plain``: the same failure in one sentence a shop owner reads, with what
to do about it ("Nothing answers at ...: check the address"), for the window and the CLI;
``str(exc)`` keeps the technical detail for logs.
"""

from __future__ import annotations


class SyncError(Exception):
    """Raised for any failure of a sync."""

    def __init__(self, message: str = "", *, plain: str | None = None) -> None:
        super().__init__(message)
        #: The failure in one plain sentence for the user, saying what to do.
        self.plain = plain or message


class RemoteError(SyncError):
    """Raised for any failure talking to the remote API."""

    #: Whether sending the same request again later may succeed.
    retryable: bool = False
    #: Whether only a change of the settings helps (a wrong key, address or certificate),
    #: rather than waiting for the network or the server to come back.
    needs_user: bool = True


class RemoteUnavailable(RemoteError):
    """Raised when the server cannot be reached or answers 5xx (after the retries)."""

    def __init__(
        self, message: str, *, retryable: bool = True, retry_after: float | None = None, plain: str | None = None,
        needs_user: bool = False,
    ) -> None:
        super().__init__(message, plain=plain)
        self.retryable = retryable
        self.needs_user = needs_user
        #: Seconds the server asked us to wait (``Retry-After``), if it said.
        self.retry_after = retry_after


class AuthenticationFailed(RemoteError):
    """Raised when the server refuses the API key (401)."""


class RateLimited(RemoteError):
    """Raised when the server still answers 429 after the retries."""

    retryable = True
    needs_user = False

    def __init__(self, message: str, *, retry_after: float | None = None, plain: str | None = None) -> None:
        super().__init__(message, plain=plain)
        #: Seconds the server asked us to wait (``Retry-After``), if it said.
        self.retry_after = retry_after


class RequestRejected(RemoteError):
    """Raised when the server refuses a request with a 4xx other than 401 and 429."""

    def __init__(self, summary: str, *, status: int, code: str, message: str, plain: str | None = None) -> None:
        super().__init__(summary, plain=plain)
        self.status = status
        #: The ``error`` field of the JSON error body (``"unknown"`` when there was none).
        self.code = code
        #: The ``message`` field of the JSON error body.
        self.message = message


class ProtocolError(RemoteError):
    """Raised when an answer is not what the contract says: not JSON, missing keys."""


class LocalStoreError(SyncError):
    """Raised when the local SQLite database fails."""

    #: Whether the store's connection must be opened afresh before the next run (it may
    #: have been opened read-only, or on a file since restored or repaired).
    reopen: bool = False


class DiskFull(LocalStoreError):
    """Raised when the disk holding the local database is full (SQLITE_FULL)."""


class DatabaseReadOnly(LocalStoreError):
    """Raised when the local database cannot be written: its mode, its folder or its drive."""

    reopen = True


class DatabaseLocked(LocalStoreError):
    """Raised when another program held the local database locked past the busy timeout."""


class DatabaseDamaged(LocalStoreError):
    """Raised when the local database is corrupt; nothing more is written to it."""

    reopen = True


class DatabaseUnreachable(LocalStoreError):
    """Raised when the local database cannot be opened, or its disk fails to read or write."""

    reopen = True


class BrokerUnavailable(SyncError):
    """Raised when the Redis broker cannot be reached or fails a command."""

    def __init__(self, message: str, *, reason: str = "", plain: str | None = None) -> None:
        super().__init__(message, plain=plain)
        #: What redis said, without the broker's address.
        self.reason = reason or message


class ConfigurationError(SyncError):
    """Raised when the settings cannot work (a bad URL, a missing CA bundle, ...)."""
