"""The remote REST API (spec §5) as the worker speaks it: health, pull, push, number blocks.

``RemoteClient`` keeps one pooled ``httpx.Client``. A request that fails for a passing reason
(connection refused or reset, timeout, 429, 502, 503, 504) is sent again by tenacity, with
exponential backoff and jitter, never sooner than ``Retry-After`` asks and never later than
``max_backoff_s``. POSTs are retried too: the server makes a re-sent batch harmless (§5).

Every failure leaves as a :class:`worker.errors.RemoteError`. httpx exceptions and HTTP
statuses become worker errors in one place, :meth:`RemoteClient._exchange`. The API key
travels in the ``Authorization`` header only and is scrubbed from every message.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Final, Self, TypeVar
from urllib.parse import urlsplit

import httpx
import tenacity

from craftsync.worker.errors import (
    AuthenticationFailed,
    ConfigurationError,
    ProtocolError,
    RateLimited,
    RemoteError,
    RemoteUnavailable,
    RequestRejected,
)

log = logging.getLogger(__name__)
E = TypeVar("E", bound=BaseException)

#: Statuses a later attempt may get past: the server is busy, or a proxy lost it for a while.
RETRY_STATUSES: Final = frozenset({429, 502, 503, 504})
#: The first backoff wait; it doubles with each attempt, plus up to as much again of jitter.
INITIAL_BACKOFF_S: Final = 0.5
_BACKOFF: Final = tenacity.wait_exponential(multiplier=INITIAL_BACKOFF_S) + tenacity.wait_random(0, INITIAL_BACKOFF_S)
#: A worker syncs a few entities at a time; a small pool keeps their connections warm.
POOL_LIMITS: Final = httpx.Limits(max_connections=8, max_keepalive_connections=4)
#: A server clock further off than this is worth a warning (§6.9: two minutes).
SKEW_WARNING_S: Final = 120.0
#: Keys shorter than this are test toys; replacing them would garble every message.
MIN_SCRUBBED_KEY: Final = 6


def _user_agent() -> str:
    try:
        return f"craftsync/{version('craftsync')}"
    except PackageNotFoundError:  # a source tree that was never installed
        return "craftsync/0+unknown"


USER_AGENT: Final = _user_agent()


@dataclass(frozen=True)
class RemoteSettings:
    """Where the remote API is and how patiently to talk to it."""

    #: The API root, ending in ``/api``, e.g. ``http://127.0.0.1:8000/api``.
    base_url: str
    api_key: str = field(repr=False)
    timeout_s: float = 30.0
    connect_timeout_s: float = 5.0
    #: True (certifi's CAs), False (no check), or the path of a CA bundle file or folder.
    verify: bool | str = True
    #: Attempts per request, the first included.
    max_attempts: int = 5
    #: The longest wait between two attempts, whatever ``Retry-After`` says.
    max_backoff_s: float = 30.0
    #: Whether the key may travel unencrypted (``http://``) to a host other than this machine;
    #: ``CRAFTSYNC_ALLOW_PLAIN_HTTP=1`` by default.
    allow_plain_http: bool = field(default_factory=lambda: os.environ.get("CRAFTSYNC_ALLOW_PLAIN_HTTP") == "1")

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigurationError(f"remote base_url must start with http:// or https://: {self.base_url!r}")
        if not self.api_key:
            raise ConfigurationError("remote api_key is empty")
        if self.base_url.startswith("http://") and not _loopback(self.base_url):
            if not self.allow_plain_http:
                raise ConfigurationError(
                    f"The API key would travel unencrypted to {self.base_url}: use an https:// address "
                    "(or set CRAFTSYNC_ALLOW_PLAIN_HTTP=1 on a network you trust)."
                )
            log.warning("CRAFTSYNC_ALLOW_PLAIN_HTTP is set: the API key travels unencrypted to %s", self.base_url)
        if self.max_attempts < 1:
            raise ConfigurationError(f"remote max_attempts must be at least 1, not {self.max_attempts}")


@dataclass(frozen=True)
class Page:
    """One page of changes after a cursor, in the server's change order."""

    records: list[dict[str, Any]]
    next_cursor: str
    has_more: bool
    #: Changes after the cursor asked from; only when the pull asked for a count.
    remaining: int | None = None


class RemoteClient:
    """A connection to the remote API; use it as a context manager, or ``close()`` it."""

    def __init__(self, settings: RemoteSettings, *, transport: httpx.BaseTransport | None = None) -> None:
        self.settings = settings
        self._http = httpx.Client(
            base_url=settings.base_url,
            headers={"Authorization": f"Bearer {settings.api_key}", "User-Agent": USER_AGENT},
            timeout=httpx.Timeout(settings.timeout_s, connect=settings.connect_timeout_s),
            limits=POOL_LIMITS,
            verify=_tls_verify(settings.verify),
            transport=transport,
        )
        self._clock_skew_s: float | None = None
        self._skew_warned = False

    def __repr__(self) -> str:
        return f"RemoteClient({self.settings.base_url!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections."""
        self._http.close()

    @property
    def clock_skew_s(self) -> float | None:
        """The server's clock minus ours, in seconds, from the latest response with a Date."""
        return self._clock_skew_s

    def health(self) -> dict[str, Any]:
        """The server's ``/health`` answer; raises when it or its database is down."""
        body = self._call("GET", "/health")
        _require(body, "status", str, self._where("GET", "/health"))
        return dict(body)

    def pull(self, entity: str, *, since: str = "0", limit: int = 500, count: bool = False) -> Page:
        """The page of ``entity`` changes after cursor ``since``."""
        params = {"since": since, "limit": limit, **({"count": "true"} if count else {})}
        body = self._call("GET", f"/{entity}", params=params)
        where = self._where("GET", f"/{entity}")
        return Page(
            records=_require(body, "records", list, where),
            next_cursor=_require(body, "next_cursor", str, where),
            has_more=_require(body, "has_more", bool, where),
            remaining=_require(body, "remaining", int, where) if count else None,
        )

    def push(self, entity: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send a batch of ``entity`` records; one result per record, in order."""
        if not records:
            return []
        body = self._call("POST", f"/{entity}", json={"records": records})
        where = self._where("POST", f"/{entity}")
        results: list[dict[str, Any]] = _require(body, "results", list, where)
        if len(results) != len(records) or not all(isinstance(r.get("status"), str) for r in results):
            raise ProtocolError(f"{where}: expected {len(records)} results with a status each")
        return results

    def number_block(self, entity: str, device_id: str, size: int) -> dict[str, Any]:
        """Reserve ``size`` consecutive ``entity`` numbers for this device."""
        body = self._call("POST", "/number-blocks", json={"entity": entity, "device_id": device_id, "size": size})
        for key, kind in (("first", int), ("last", int), ("first_number", str), ("last_number", str)):
            _require(body, key, kind, self._where("POST", "/number-blocks"))
        return dict(body)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON body of a request, sent again while it fails for a passing reason."""
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.settings.max_attempts),
            wait=self._wait,
            retry=tenacity.retry_if_exception(lambda exc: isinstance(exc, RemoteError) and exc.retryable),
            before_sleep=_log_retry,
            reraise=True,
        )
        return retrying(self._exchange, method, path, **kwargs)

    def _wait(self, state: tenacity.RetryCallState) -> float:
        """Backoff with jitter, at least what Retry-After asked, at most ``max_backoff_s``."""
        failure = state.outcome.exception() if state.outcome else None
        asked = getattr(failure, "retry_after", None) or 0.0
        return min(max(asked, _BACKOFF(state)), self.settings.max_backoff_s)

    def _exchange(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send one request and return its JSON body, or raise the RemoteError it amounts to.

        The one boundary where httpx exceptions and HTTP statuses become worker errors.
        """
        where = self._where(method, path)
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self._unreachable(where, exc) from exc
        except httpx.HTTPError as exc:  # a bad encoding, too many redirects
            raise ProtocolError(self._clean(f"{where}: {type(exc).__name__}: {exc}")) from exc
        self._note_clock(response)
        if not response.is_success:
            raise self._refusal(where, response)
        try:
            return response.json()
        except ValueError as exc:
            raise ProtocolError(self._clean(f"{where}: the answer is not JSON ({exc})"),
                                plain=_no_api_here(self.settings.base_url)) from exc

    def _unreachable(self, where: str, exc: httpx.TransportError) -> RemoteUnavailable:
        base = self.settings.base_url
        tls = _ssl_cause(exc)
        if tls is not None:  # a certificate or handshake failure will not pass by itself
            return RemoteUnavailable(
                self._clean(f"{where}: TLS failure: {tls}"), retryable=False, needs_user=True,
                plain=f"The server at {base} failed the security check (its certificate could not be verified): "
                      "check the address, or set CRAFTSYNC_CA_BUNDLE to your company's certificate.",
            )
        if isinstance(exc, httpx.UnsupportedProtocol):
            plain = f"{base} is not a web address: it must start with http:// or https://."
        elif isinstance(exc, httpx.TimeoutException):
            plain = f"The server at {base} did not answer in time: check the network connection."
        elif _cause(exc, socket.gaierror) is not None:
            plain = f"The server name in {base} cannot be found: check the address and the network connection."
        else:
            plain = f"Nothing answers at {base}: check the address and that the server is running."
        kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "cannot connect"
        retryable = not isinstance(exc, httpx.UnsupportedProtocol)
        return RemoteUnavailable(self._clean(f"{where}: {kind}: {exc or type(exc).__name__}"), retryable=retryable,
                                 plain=plain, needs_user=not retryable)

    def _refusal(self, where: str, response: httpx.Response) -> RemoteError:
        status = response.status_code
        code, message = _error_body(response)
        said = self._clean(f"{status} {code}: {message}")
        retry_after = _seconds_until(response.headers.get("Retry-After"))
        base = self.settings.base_url
        if status == 401:
            return AuthenticationFailed(
                f"{where}: the server refused the API key ({said})",
                plain=f"The server at {base} refused the API key: enter the right key in Settings.",
            )
        if status == 429:
            return RateLimited(f"{where}: rate limited ({said})", retry_after=retry_after,
                               plain="The server is busy right now: sync tries again shortly.")
        if status >= 500:
            plain = (f"The server at {base} cannot reach its database right now: try again later."
                     if status == 503 and where.endswith("/health") else
                     f"The server at {base} has a problem right now (error {status}): sync tries again later.")
            return RemoteUnavailable(
                f"{where}: server failed ({said})", retryable=status in RETRY_STATUSES, retry_after=retry_after,
                plain=plain,
            )
        if status >= 400:
            # Every path the client asks for exists on a CraftSync API: a 404 means the address is wrong.
            plain = (_no_api_here(base) if status in (404, 405)
                     else f"The server refused the request: {self._clean(message) or said}.")
            return RequestRejected(f"{where}: refused ({said})", status=status, code=code,
                                   message=self._clean(message), plain=plain)
        return ProtocolError(f"{where}: unexpected status {status}", plain=_no_api_here(base))

    def _note_clock(self, response: httpx.Response) -> None:
        skew = _seconds_from_now(response.headers.get("Date"))
        if skew is None:
            return
        self._clock_skew_s = skew
        if abs(skew) > SKEW_WARNING_S and not self._skew_warned:
            self._skew_warned = True
            log.warning("the server clock at %s differs from this computer's by %+.0f s", self.settings.base_url, skew)

    def _where(self, method: str, path: str) -> str:
        return f"{method} {self.settings.base_url.rstrip('/')}{path}"

    def _clean(self, text: str) -> str:
        """``text`` on one line, without the API key (a toy key of a few letters is left)."""
        if len(self.settings.api_key) >= MIN_SCRUBBED_KEY:
            text = text.replace(self.settings.api_key, "<api-key>")
        return " ".join(text.split())


def _loopback(url: str) -> bool:
    """Whether ``url`` points at this machine, where plain HTTP never leaves it."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _tls_verify(verify: bool | str) -> bool | ssl.SSLContext:
    """What httpx's ``verify`` takes: a bool, or a context trusting the CA bundle at a path."""
    if isinstance(verify, bool):
        return verify
    try:
        if os.path.isdir(verify):
            return ssl.create_default_context(capath=verify)
        return ssl.create_default_context(cafile=verify)
    except OSError as exc:
        raise ConfigurationError(f"the CA bundle {verify} cannot be used: {exc}") from exc


def _ssl_cause(exc: BaseException) -> ssl.SSLError | None:
    """The ssl error behind an httpx error, if any."""
    return _cause(exc, ssl.SSLError)


def _cause(exc: BaseException, kind: type[E]) -> E | None:
    """The first exception of ``kind`` in the chain behind ``exc``, if any."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _no_api_here(base: str) -> str:
    """What to tell a user whose URL reaches a web server that is not a CraftSync API."""
    hint = "" if base.rstrip("/").endswith("/api") else f"; it usually ends in /api, e.g. {base.rstrip('/')}/api"
    return f"There is no CraftSync API at {base}: check the address{hint}."


def _error_body(response: httpx.Response) -> tuple[str, str]:
    """The ``error`` code and ``message`` of a JSON error body, else the reason phrase."""
    try:
        body = response.json()
    except ValueError:  # a proxy's HTML page, say
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return body["error"], str(body.get("message", ""))
    return "unknown", response.reason_phrase


def _seconds_until(retry_after: str | None) -> float | None:
    """A ``Retry-After`` value, in seconds or an HTTP date, as seconds from now."""
    if retry_after is None:
        return None
    try:
        return max(0.0, float(retry_after))
    except ValueError:
        seconds = _seconds_from_now(retry_after)
    return None if seconds is None else max(0.0, seconds)


def _seconds_from_now(http_date: str | None) -> float | None:
    """Seconds from now until ``http_date``; None when there is no valid date."""
    if not http_date:
        return None
    try:
        when = parsedate_to_datetime(http_date)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - datetime.now(UTC)).total_seconds()


def _require(body: Any, key: str, kind: type, where: str) -> Any:
    """``body[key]``, which the contract says is a ``kind`` (a list: of objects); else ProtocolError."""
    value = body.get(key) if isinstance(body, dict) else None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ProtocolError(f"{where}: the answer has no {key!r} of type {kind.__name__}",
                            plain=_no_api_here(where.split(" ", 1)[-1].rsplit("/", 1)[0]))
    if kind is list and not all(isinstance(item, dict) for item in body[key]):
        raise ProtocolError(f"{where}: {key!r} holds an item that is not an object")
    return value


def _log_retry(state: tenacity.RetryCallState) -> None:
    failure = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    log.info("attempt %d failed, retrying in %.1f s: %s", state.attempt_number, wait, failure)
