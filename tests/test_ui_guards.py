"""The UI server's guards (spec §9): the per-launch secret (cookie, header, launch token),
the Host and Origin checks, the CSP on every answer, and JSON 404s.

Everything is real except the window: the local SQLite store, the preferences and key file,
the reference server over HTTP as the remote (and in-process for the Device helpers that
make runs and conflicts in the UI's database), Redis with dramatiq's broker for the queue
and the event channel, and the connection monitor (the fixtures of tests/support/fixtures.py).
"""

from __future__ import annotations

from typing import Any

import pytest

from craftsync.shell.ui_server import CSP, WEB_DIR
from tests.support.ui import BASE_URL, COOKIE, ORIGIN, PORT, SECRET, Page, Ui, json_of


def _forbidden(response: Any) -> None:
    assert response.status_code == 403, (response.status_code, response.data[:200])
    assert json_of(response)["error"] == "forbidden"
    assert response.headers["Content-Security-Policy"] == CSP


# -- §9 security: the secret ---------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/static/js/app.js", "/api/status", "/api/settings", "/api/records/customers"])
def test_requests_without_the_secret_are_refused(ui: Ui, path: str) -> None:
    # Given no cookie and no header
    response = ui.page().get(path)
    # Then the answer is 403 with a JSON error and the CSP
    _forbidden(response)


def test_a_wrong_secret_is_refused_in_cookie_header_and_launch_token(ui: Ui) -> None:
    # A wrong cookie
    page = ui.page()
    page.client.set_cookie(COOKIE, "not-the-secret", domain="127.0.0.1")
    _forbidden(page.get("/api/status"))
    # A wrong header
    _forbidden(ui.page(headers={"X-CraftSync-Token": "not-the-secret"}).get("/api/status"))
    # The right secret under another port's cookie name
    page = ui.page()
    page.client.set_cookie(f"craftsync_{PORT + 1}", SECRET, domain="127.0.0.1")
    _forbidden(page.get("/api/status"))
    # A wrong launch token: refused, and no cookie is handed out
    page = ui.page()
    response = page.get("/?token=not-the-secret")
    _forbidden(response)
    assert "Set-Cookie" not in response.headers
    _forbidden(page.get("/api/status"))
    # A prefix of the secret is not the secret
    _forbidden(ui.page(headers={"X-CraftSync-Token": SECRET[:-1]}).get("/api/status"))


def test_the_launch_token_sets_a_strict_httponly_cookie_and_redirects_home(ui: Ui) -> None:
    # When the window opens /?token=<secret>
    page = ui.page()
    response = page.login()
    # Then it is redirected to / with the cookie craftsync_<port>
    assert response.status_code in (302, 303)
    assert response.headers["Location"] in ("/", f"{BASE_URL}/")
    assert response.headers["Content-Security-Policy"] == CSP
    (cookie,) = response.headers.getlist("Set-Cookie")
    attributes = [part.strip() for part in cookie.split(";")]
    assert attributes[0] == f"{COOKIE}={SECRET}"
    assert "HttpOnly" in attributes
    assert "SameSite=Strict" in attributes
    assert "Path=/" in attributes
    # And the real page, its script and its style sheet, and the API, now answer with that
    # cookie alone, each with the CSP
    home = page.get("/")
    assert home.status_code == 200 and home.data == (WEB_DIR / "index.html").read_bytes()
    assert home.mimetype == "text/html" and home.headers["Content-Security-Policy"] == CSP
    assert '<script type="module" src="/static/js/app.js"></script>' in home.data.decode()
    script = page.get("/static/js/app.js")
    assert script.status_code == 200 and script.data == (WEB_DIR / "js" / "app.js").read_bytes()
    assert script.mimetype in ("text/javascript", "application/javascript")
    assert script.headers["Content-Security-Policy"] == CSP
    style = page.get("/static/css/app.css")
    assert style.status_code == 200 and style.data == (WEB_DIR / "css" / "app.css").read_bytes()
    assert page.get("/api/status").status_code == 200


def test_the_header_is_an_alternative_to_the_cookie(ui: Ui) -> None:
    page = ui.page(headers={"X-CraftSync-Token": SECRET})
    assert page.get("/api/settings").status_code == 200
    script = page.get("/static/js/app.js")
    assert script.status_code == 200 and script.data == (WEB_DIR / "js" / "app.js").read_bytes()


def test_static_files_outside_web_are_not_served(page: Page) -> None:
    # Given a file beside web/ (the UI server's own source, in the project as in the package)
    outside = WEB_DIR.parent / "shell" / "ui_server.py"
    assert outside.is_file()
    first_line = outside.read_bytes().splitlines()[0]
    for path in ("/static/../shell/ui_server.py", "/static/%2e%2e/shell/ui_server.py",
                 "/static/..%2fshell/ui_server.py", "/static/..%2fshell%2fui_server.py",
                 "/static/js/../../shell/ui_server.py", "/static/%2e%2e%2f%2e%2e%2fshell/ui_server.py"):
        response = page.get(path)
        assert response.status_code == 404, path
        assert first_line not in response.data
        assert response.headers["Content-Security-Policy"] == CSP


# -- §9 security: Host and Origin ------------------------------------------------------------


@pytest.mark.parametrize(
    "base_url",
    ["http://evil.example:5555", f"http://127.0.0.1:{PORT + 1}", "http://127.0.0.1", "http://localhost:80",
     f"http://127.0.0.2:{PORT}", f"http://[::1]:{PORT}"],
)
def test_a_foreign_host_is_refused_even_with_the_secret(ui: Ui, base_url: str) -> None:
    # DNS rebinding: the browser sends the secret cookie... to a name that resolves to us
    page = ui.page(base_url=base_url, headers={"X-CraftSync-Token": SECRET})
    _forbidden(page.get("/api/status"))
    # and the launch token does not hand out a cookie there either
    response = page.get(f"/?token={SECRET}")
    _forbidden(response)
    assert "Set-Cookie" not in response.headers


def test_localhost_with_the_port_is_accepted(ui: Ui) -> None:
    page = ui.page(base_url=f"http://localhost:{PORT}", headers={"X-CraftSync-Token": SECRET})
    assert page.get("/api/status").status_code == 200
    assert page.post("/api/records/customers", json={"name": "Via localhost"},
                     headers={"Origin": f"http://localhost:{PORT}"}).status_code == 201


@pytest.mark.parametrize("origin", ["http://evil.example", f"http://127.0.0.1:{PORT + 1}", "null",
                                    f"https://127.0.0.1:{PORT}", f"http://evil.example:{PORT}"])
def test_state_changing_requests_from_a_foreign_origin_are_refused(ui: Ui, page: Page, origin: str) -> None:
    # Given a customer and the page's cookie
    created = json_of(page.post("/api/records/customers", json={"name": "Kept"}, headers={"Origin": ORIGIN}))
    record_id = created["record"]["id"]
    foreign = {"Origin": origin}
    # When another origin posts, puts and deletes with that cookie
    _forbidden(page.post("/api/records/customers", json={"name": "Injected"}, headers=foreign))
    _forbidden(page.put(f"/api/records/customers/{record_id}", json={"name": "Changed"}, headers=foreign))
    _forbidden(page.delete(f"/api/records/customers/{record_id}", headers=foreign))
    _forbidden(page.put("/api/settings", json={"auto_sync": False}, headers=foreign))
    _forbidden(page.post("/api/sync", json={}, headers=foreign))
    # Then nothing was written and nothing queued
    rows = ui.host_sql("SELECT name, deleted_at FROM customers")
    assert [tuple(r) for r in rows] == [("Kept", None)]
    assert ui.prefs.load().auto_sync is True
    assert ui.nothing_queued()


def test_same_origin_requests_are_accepted(ui: Ui, page: Page) -> None:
    same = {"Origin": ORIGIN}
    created = page.post("/api/records/customers", json={"name": "Ann"}, headers=same)
    assert created.status_code == 201
    record_id = created.get_json()["record"]["id"]
    assert page.put(f"/api/records/customers/{record_id}", json={"city": "Lyon"}, headers=same).status_code == 200
    assert page.put("/api/settings", json={"auto_sync": False}, headers=same).status_code == 200
    assert page.post("/api/sync", json={"entities": ["customers"]}, headers=same).status_code == 202
    assert page.delete(f"/api/records/customers/{record_id}", headers=same).status_code == 204
    # A GET from elsewhere is not state-changing: the secret and the Host decide
    assert page.get("/api/status", headers={"Origin": "http://evil.example"}).status_code == 200


def test_every_answer_carries_the_csp(ui: Ui, page: Page) -> None:
    answers = [
        ui.page().get("/api/status"),  # 403
        page.get("/static/js/app.js"),
        page.get("/static/nothing-here.js"),  # 404
        page.get("/"),
        page.get("/api/status"),
        page.get("/api/settings"),
        page.get("/api/history"),
        page.get("/api/conflicts"),
        page.get("/api/records/customers"),
        page.get("/api/records/nothing"),  # 404
        page.post("/api/sync", json={"direction": "sideways"}),  # 400
        page.post("/api/sync", json={}),  # 202
        page.login(),  # 303
    ]
    for response in answers:
        assert response.headers.get("Content-Security-Policy") == CSP, (response.request.path, response.status_code)
        assert response.headers.get("X-Content-Type-Options") == "nosniff"
    csp = {part.split()[0]: part.split()[1:] for part in CSP.split("; ")}
    assert csp["script-src"] == ["'self'"] and csp["style-src"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"] and csp["object-src"] == ["'none'"]


def test_unknown_paths_answer_404_json(page: Page) -> None:
    response = page.get("/api/nothing")
    assert response.status_code == 404 and json_of(response)["error"] == "not_found"
