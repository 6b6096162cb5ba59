"""The reference server against an attacker on the network (issue 11: items 4, 5, 6 and 8).

Each test plays the attacker against a real ``craftsync server`` process (or, for the one
database-specific case, the app on every backend) and asserts what the attacker can no
longer do.
"""

from __future__ import annotations

import hashlib
import secrets
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.api import API_KEY, AUTH, make_app
from tests.support.process import CRAFTSYNC, Service, clean_env, free_port, start_server, wait_until


@pytest.fixture
def server(request: pytest.FixtureRequest, tmp_path: Path, sqlite_url: str) -> Iterator[tuple[str, Service]]:
    """A ``craftsync server`` with the default limits but 600 keyless requests and 3 per key a minute
    (or the budget the test passes as the fixture's parameter); its API root and the process."""
    port = free_port()
    env = clean_env(tmp_path, DATABASE_URL=sqlite_url, API_KEYS=API_KEY,
                    RATE_LIMIT=getattr(request, "param", "3/minute"), OPEN_LIMIT="600/minute")
    service = start_server(env, port=port, log=tmp_path / "server.log", cwd=tmp_path, fail=pytest.fail)
    try:
        yield f"http://127.0.0.1:{port}/api", service
    finally:
        service.stop()


def _read_status(sock: socket.socket) -> int:
    """The status code of the response arriving on ``sock``."""
    head = sock.recv(4096).decode("latin-1")
    return int(head.split(" ", 2)[1])


# -- item 8: oversized bodies and NUL in ids ----------------------------------------------------


def test_a_declared_100_mib_body_is_refused_before_it_is_sent(server: tuple[str, Service]) -> None:
    # Given a server, and a client that declares a 100 MiB body but sends none of it
    url, _ = server
    port = int(url.split(":")[2].split("/")[0])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /api/customers HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer " + API_KEY.encode() + b"\r\nContent-Length: 104857600\r\n\r\n")

        # Then the server answers 413 at once, without waiting for (or buffering) the body
        assert _read_status(sock) == 413
        assert time.monotonic() - started < 2


def test_a_nul_in_a_record_id_is_a_plain_not_found_on_every_database(database_url: str) -> None:
    # Given the API on each database
    client = make_app(database_url).test_client()

    # When an id holds a NUL character (which PostgreSQL refuses in text)
    response = client.get("/api/customers/a%00b", headers=AUTH)

    # Then it is a 404 like any unknown id, not a server error
    assert response.status_code == 404
    assert response.get_json()["error"] == "not_found"


# -- item 4: guessing keys ---------------------------------------------------------------------


@pytest.mark.parametrize("server", ["100000/minute"], indirect=True)
def test_guessing_keys_from_one_address_is_refused_after_the_failed_login_limit(server: tuple[str, Service]) -> None:
    # Given a server, and an attacker sending 1,300 requests, each with a fresh wrong key
    url, _ = server
    with httpx.Client(base_url=url, timeout=10) as http:
        statuses = [http.get("/customers", headers={"Authorization": f"Bearer {secrets.token_urlsafe(24)}"}).status_code
                    for _ in range(1300)]
        health = [http.get("/health").status_code for _ in range(700)]

    # Then the first 30 failures are 401 and every later guess is 429, whichever key it tries
    assert statuses[:30] == [401] * 30
    assert set(statuses[30:]) == {429}
    # And the endpoints that need no key have a limit too
    assert health[0] == 200 and health[-1] == 429


def guesses(url: str, count: int, forwarded_for: str) -> list[int]:
    """The statuses of ``count`` requests with fresh wrong keys, claiming to come from ``forwarded_for``."""
    with httpx.Client(base_url=url, timeout=10) as http:
        return [http.get("/customers", headers={"Authorization": f"Bearer {secrets.token_urlsafe(24)}",
                                                "X-Forwarded-For": forwarded_for}).status_code for _ in range(count)]


def test_a_forged_forwarded_address_does_not_escape_the_failed_login_limit(server: tuple[str, Service]) -> None:
    # Given a server with no trusted proxy, and an attacker who used up its failed logins
    url, _ = server
    assert guesses(url, 31, "203.0.113.1")[-1] == 429

    # When it claims another address in X-Forwarded-For
    # Then it is still refused
    assert guesses(url, 1, "203.0.113.2") == [429]


def test_behind_the_trusted_proxy_each_client_address_has_its_own_failed_login_limit(
    tmp_path: Path, sqlite_url: str,
) -> None:
    # Given a server behind a proxy named in TRUSTED_PROXY (here: the test, on loopback)
    port = free_port()
    env = clean_env(tmp_path, DATABASE_URL=sqlite_url, API_KEYS=API_KEY, TRUSTED_PROXY="127.0.0.1")
    service = start_server(env, port=port, log=tmp_path / "server.log", cwd=tmp_path, fail=pytest.fail)
    url = f"http://127.0.0.1:{port}/api"
    try:
        # When one client address guesses past the limit
        assert guesses(url, 31, "203.0.113.1")[-1] == 429

        # Then that address is refused, and another client behind the same proxy is not
        assert guesses(url, 1, "203.0.113.1") == [429]
        assert guesses(url, 1, "203.0.113.2") == [401]
        assert httpx.get(f"{url}/customers", headers={**AUTH, "X-Forwarded-For": "203.0.113.3"}).status_code == 200
    finally:
        service.stop()


def test_a_valid_keys_digest_never_reaches_the_server_log(server: tuple[str, Service]) -> None:
    # Given a server whose log records every refused request
    url, service = server

    # When the valid key runs past its budget (3 a minute here) and gets 429
    statuses = [httpx.get(f"{url}/customers", headers=AUTH, timeout=10).status_code for _ in range(5)]
    assert statuses[-1] == 429

    # Then neither the key nor any digest of it a guess could be checked against is in the log
    log = service.log.read_text()
    assert "ratelimit" in log  # the refusals are logged...
    digest = hashlib.sha256(API_KEY.encode()).hexdigest()
    assert API_KEY not in log and digest[:16] not in log  # ...without the key or its digest


def test_the_server_refuses_to_start_with_a_key_that_could_be_guessed(tmp_path: Path, sqlite_url: str) -> None:
    # Given API_KEYS holding a short key
    env = clean_env(tmp_path, DATABASE_URL=sqlite_url, API_KEYS=f"dev-key,{API_KEY}")

    # When the server starts
    done = subprocess.run([*CRAFTSYNC, "server", "--port", str(free_port())], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)

    # Then it exits at once with one plain line saying why
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "shorter than 16 characters" in lines[0]


# -- item 5: slow clients ----------------------------------------------------------------------


def test_200_slow_clients_leave_normal_requests_answered_within_2_s(server: tuple[str, Service]) -> None:
    # Given a server, and 200 sockets each sending the start of a request line, then stalling
    url, _ = server
    port = int(url.split(":")[2].split("/")[0])
    slow = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(200)]
    try:
        for sock in slow:
            sock.sendall(b"GET /api/hea")
        for sock in slow:  # ...and a byte more, slowly
            sock.sendall(b"l")

        # When a normal client asks for the health check
        started = time.monotonic()
        response = httpx.get(f"{url}/health", timeout=10)

        # Then it is answered, within 2 s
        assert response.status_code == 200
        assert time.monotonic() - started < 2
    finally:
        for sock in slow:
            sock.close()


# -- item 6: TLS, and no key over plain HTTP ---------------------------------------------------


@pytest.fixture
def https_server(tmp_path: Path, sqlite_url: str) -> Iterator[tuple[str, Path]]:
    """``craftsync server --certfile --keyfile`` with a certificate from a test CA; its API root
    and the CA's certificate file."""
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ca.cert_pem.write_to_path(ca_file)
    cert.private_key_pem.write_to_path(key_file)
    for n, pem in enumerate(cert.cert_chain_pems):
        pem.write_to_path(cert_file, append=n > 0)
    port = free_port()
    env = clean_env(tmp_path, DATABASE_URL=sqlite_url, API_KEYS=API_KEY)
    service = Service([*CRAFTSYNC, "server", "--port", str(port), "--certfile", str(cert_file), "--keyfile",
                       str(key_file)], env=env, log=tmp_path / "server.log", cwd=tmp_path)
    url = f"https://127.0.0.1:{port}/api"

    def healthy() -> bool:
        assert service.alive(), service.tail()
        try:
            return httpx.get(f"{url}/health", verify=ssl.create_default_context(cafile=ca_file), timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(healthy, timeout=30, what="the HTTPS server's /api/health", fail=pytest.fail)
        yield url, ca_file
    finally:
        service.stop()


def sync(tmp_path: Path, url: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``craftsync sync --inline`` of a fresh device against ``url``."""
    home = tmp_path / f"device-{secrets.token_hex(3)}"
    variables = clean_env(home, CRAFTSYNC_DB=str(home / "craftsync.db"),
                          REMOTE_API_URL=url, REMOTE_API_KEY=API_KEY, **env)
    return subprocess.run([*CRAFTSYNC, "sync", "customers", "--inline"], env=variables, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)


def test_sync_over_https_works_with_the_servers_ca_and_says_so_with_hsts(
    tmp_path: Path, https_server: tuple[str, Path],
) -> None:
    # Given a server over HTTPS with a certificate from the company's CA
    url, ca_file = https_server

    # When a device syncs, trusting that CA
    done = sync(tmp_path, url, CRAFTSYNC_CA_BUNDLE=str(ca_file))

    # Then the sync completes, and the server asks browsers to stay on HTTPS
    assert done.returncode == 0, done.stderr
    health = httpx.get(f"{url}/health", verify=ssl.create_default_context(cafile=ca_file), timeout=10)
    assert health.headers["Strict-Transport-Security"].startswith("max-age=")


def test_a_server_whose_certificate_cannot_be_verified_gets_no_key(
    tmp_path: Path, https_server: tuple[str, Path],
) -> None:
    # Given a server over HTTPS, and a device trusting another CA
    url, _ = https_server
    other_ca = tmp_path / "other-ca.pem"
    pytest.importorskip("trustme").CA().cert_pem.write_to_path(other_ca)

    # When the device syncs
    done = sync(tmp_path, url, CRAFTSYNC_CA_BUNDLE=str(other_ca))

    # Then the sync fails, and its summary line says in one sentence that the check failed
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    summary = done.stderr.strip().splitlines()[-1]
    assert "error: The server at" in summary and "its certificate could not be verified" in summary


def test_the_key_is_not_sent_over_plain_http_to_another_machine(tmp_path: Path) -> None:
    # Given a listener on a non-loopback address of this machine's own making: none is needed,
    # the refusal comes before any connection (192.0.2.1 is reserved for documentation)
    # When a device is pointed at http:// on another machine
    done = sync(tmp_path, "http://192.0.2.1:8000/api")

    # Then it refuses at once with one line, without trying to connect
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "unencrypted" in lines[0] and "CRAFTSYNC_ALLOW_PLAIN_HTTP" in lines[0]
