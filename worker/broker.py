"""The worker's side of the Redis broker: the one place where redis errors are translated.

Queueing a sync, following events and checking that the broker answers all talk to Redis;
wrapped in ``broker_errors``, a ``redis.RedisError`` leaves as ``BrokerUnavailable`` (a
``SyncError``) naming the broker without its password.

``wait_until_answers`` is how a process started beside the broker (``honcho start`` runs the
Procfile's processes all at once) waits for it, or for the server, instead of exiting: it
says once what it waits for, then checks again with backoff (tenacity) until it answers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Final

import redis
import tenacity
from sqlalchemy.engine import make_url

from craftsync.worker.errors import BrokerUnavailable

#: How long a check that the broker answers waits for the connection.
PING_TIMEOUT_S: Final = 3.0
#: The first pause between two checks of a service that does not answer yet; it doubles
#: with each check, up to WAIT_STEP_MAX_S, so that a service that is slow to start is
#: found within seconds and one that is away for long is not hammered.
WAIT_STEP_S: Final = 0.2
WAIT_STEP_MAX_S: Final = 5.0


@contextmanager
def broker_errors(url: str | None = None) -> Iterator[None]:
    """Turn a redis error inside the block into BrokerUnavailable."""
    try:
        yield
    except redis.RedisError as exc:
        where = f" at {safe_url(url)}" if url else ""
        if isinstance(exc, redis.exceptions.AuthenticationError | redis.exceptions.AuthorizationError):
            plain = f"The broker{where} refused the password in REDIS_URL: correct REDIS_URL."
        else:
            plain = f"The broker{where} is not answering: check that it runs, then try again."
        raise BrokerUnavailable(f"cannot reach the broker{where}: {exc}", reason=str(exc), plain=plain) from exc


def ping(url: str, *, timeout_s: float = PING_TIMEOUT_S) -> None:
    """Check that the broker at ``url`` answers; BrokerUnavailable when it does not."""
    with broker_errors(url), redis.Redis.from_url(url, socket_connect_timeout=timeout_s) as client:
        client.ping()


def safe_url(url: str) -> str:
    """A broker URL without its password, for messages."""
    return make_url(url).render_as_string(hide_password=True)


def not_answering_yet(exc: BaseException) -> str | None:
    """Why the broker did not answer, when waiting may help ("not answering yet"); None
    when it answered and refused (a wrong password): waiting would not change that."""
    cause = exc.__cause__ if isinstance(exc, BrokerUnavailable) else exc
    if isinstance(cause, redis.exceptions.BusyLoadingError):
        return "loading its data"
    if isinstance(cause, redis.exceptions.AuthenticationError | redis.exceptions.AuthorizationError):
        return None
    if isinstance(cause, redis.ConnectionError | redis.TimeoutError):
        return "not answering yet"
    return None


def wait_until_answers(
    check: Callable[[], object],
    *,
    what: str,
    passing: Callable[[BaseException], str | None],
    say: Callable[[str], None],
    stop: tenacity.stop.stop_base = tenacity.stop_never,
) -> None:
    """Call ``check`` until it returns; while it raises an error for which ``passing`` gives
    a reason, say once "waiting for WHAT (reason) ..." and try again with backoff. Any other
    error, or the last one when ``stop`` ends the wait, is raised."""
    waited = False

    def waiting(state: tenacity.RetryCallState) -> None:
        nonlocal waited
        if not waited:
            waited = True
            say(f"waiting for {what} ({passing(state.outcome.exception())}) ...")  # type: ignore[union-attr,arg-type]

    tenacity.Retrying(
        retry=tenacity.retry_if_exception(lambda exc: passing(exc) is not None),
        wait=tenacity.wait_exponential(multiplier=WAIT_STEP_S, max=WAIT_STEP_MAX_S),
        stop=stop,
        before_sleep=waiting,
        reraise=True,
    )(check)
    if waited:
        say(f"{what} answers")


def wait_for_broker(url: str, *, say: Callable[[str], None],
                    stop: tenacity.stop.stop_base = tenacity.stop_never) -> None:
    """Return once the broker at ``url`` answers (at once if it does); BrokerUnavailable when
    it refuses us, or when ``stop`` ends the wait."""
    wait_until_answers(lambda: ping(url), what=f"the broker at {safe_url(url)}", passing=not_answering_yet,
                       say=say, stop=stop)


#: What the status says while the broker does not answer.
UNREACHABLE: Final = "The sync service's broker is not answering: syncs wait until it is back."


def broker_state(url: str | None) -> dict[str, str]:
    """The broker as ``craftsync status`` and the UI's status show it: ``online``,
    ``unreachable`` (with ``detail``, the sentence to show) or ``unconfigured``."""
    if not url:
        return {"state": "unconfigured"}
    try:
        ping(url, timeout_s=1.0)
    except BrokerUnavailable:
        return {"state": "unreachable", "url": safe_url(url), "detail": UNREACHABLE}
    return {"state": "online", "url": safe_url(url)}
