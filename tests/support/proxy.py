"""A fault-injecting HTTP proxy on loopback, for tests and the soak: it stands between the
workers and the reference server and breaks a share of the requests it passes on.

``FaultyProxy(upstream, rate=0.1)`` listens on a free port of 127.0.0.1 and forwards every
request to ``upstream`` (a loopback URL only). Each request is broken with probability
``rate``, in one of the ways a real network or proxy breaks it:

- ``refused``: answered 503 without reaching the server (a busy proxy, a deploy);
- ``dropped``: the connection closed before the request reaches the server;
- ``answer lost``: the server handled the request, then the connection closed before the
  answer came back (the client cannot know whether its push was applied).

While the server itself is away (restarting), the proxy answers 502, as a real one does
(``upstream away``). ``counts`` tells how many requests met each outcome (``passed`` for
those forwarded intact). ``rate`` may be changed at any time, e.g. to 0 to stop the faults.
"""

from __future__ import annotations

import random
import sys
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final
from urllib.parse import urlsplit

import httpx

#: The ways a request is broken, chosen with equal chance.
FAULTS: Final = ("refused", "dropped", "answer lost")
#: Headers that belong to one connection, not to the message: never passed on.
HOP_BY_HOP: Final = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length",
                               "content-encoding", "proxy-connection", "te", "trailer", "upgrade"})
LOOPBACK: Final = frozenset({"127.0.0.1", "localhost", "::1"})
#: Long enough for a large push batch or pull page on a busy machine.
UPSTREAM_TIMEOUT_S: Final = 120


class FaultyProxy:
    """An HTTP proxy on 127.0.0.1 in front of ``upstream`` that breaks ``rate`` of the requests."""

    def __init__(self, upstream: str, *, rate: float = 0.0, seed: int = 0) -> None:
        if urlsplit(upstream).hostname not in LOOPBACK:
            raise ValueError(f"the proxy forwards to loopback only, not to {upstream}")
        self.upstream = upstream.rstrip("/")
        self.rate = rate
        self.counts: Counter[str] = Counter()
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._client = httpx.Client(timeout=UPSTREAM_TIMEOUT_S, limits=httpx.Limits(max_connections=64))
        self._server = _QuietServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="faulty-proxy", daemon=True)

    def start(self) -> FaultyProxy:
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
        self._client.close()

    def choose(self) -> str | None:
        """The fault for the next request, or None to pass it on intact."""
        with self._lock:
            if self._random.random() >= self.rate:
                return None
            return self._random.choice(FAULTS)

    def count(self, outcome: str) -> None:
        with self._lock:
            self.counts[outcome] += 1

    def forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> httpx.Response | None:
        """The upstream's answer, or None when it does not answer (it is away)."""
        try:
            return self._client.request(method, self.upstream + path, headers=headers, content=body)
        except httpx.TransportError:
            return None


class _QuietServer(ThreadingHTTPServer):
    """A client that hangs up mid-answer (a worker killed) is no error of the proxy's."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _handler(proxy: FaultyProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the workers' pooled client expects

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
            pass  # one line per request would drown the soak's own output

        def _relay(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            fault = proxy.choose()
            if fault == "refused":
                proxy.count(fault)
                self._answer(503, b'{"error": "unavailable", "message": "proxy busy"}', {"Retry-After": "0"})
                return
            if fault == "dropped":
                proxy.count(fault)
                self.close_connection = True
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP | {"host"}}
            response = proxy.forward(self.command, self.path, headers, body)
            if response is None:
                proxy.count("upstream away")
                self._answer(502, b'{"error": "bad_gateway", "message": "the server is not answering"}', {})
                return
            if fault == "answer lost":
                proxy.count(fault)
                self.close_connection = True
                return
            proxy.count("passed")
            # send_response writes its own Server and Date lines
            passed_on = {k: v for k, v in response.headers.items()
                         if k.lower() not in HOP_BY_HOP | {"server", "date"}}
            self._answer(response.status_code, response.content, passed_on)

        def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            if "content-type" not in {k.lower() for k in headers}:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _relay

    return Handler
