"""The UI server: the page's only backend, on a loopback port, for one desktop session.

It serves ``web/`` and the local JSON API of ``docs/UI-API.md``, and relays the workers'
progress events from Redis pub/sub to the page as Server-Sent Events.

Security (spec §9): every request must carry the per-launch secret (a cookie set when the
window opens ``/?token=<secret>``, or the ``X-CraftSync-Token`` header); the Host header
must be this server's loopback address (no DNS rebinding); a state-changing request with
a foreign ``Origin`` is refused (no other web page driving it); every answer carries a
strict Content-Security-Policy.
"""

from __future__ import annotations

import hmac
import json
import importlib.resources
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final, Protocol

import redis
from flask import Flask, Response, abort, current_app, g, jsonify, redirect, request, send_from_directory
from werkzeug.exceptions import HTTPException

from craftsync.contract.records import ENTITIES, REFERENCES, required_fields
from craftsync.contract.vocabulary import ALL_ENTITIES, Direction, EventType, Policy, Resolution, values
from craftsync.shell import records_api
from craftsync.shell.preferences import InvalidPreferences, Preferences, PreferenceStore, masked
from craftsync.shell.remote_choice import RemoteChoice
from craftsync.worker.conflicts import CHOICES, ConflictNotFound, InvalidResolution, open_conflicts, resolve
from craftsync.worker.broker import UNREACHABLE as BROKER_UNREACHABLE
from craftsync.worker.broker import broker_errors
from craftsync.worker.errors import BrokerUnavailable, LocalStoreError, SyncError
from craftsync.worker.events import channel
from craftsync.worker.queue import running, sync_order
from craftsync.worker.remote import RemoteClient, RemoteSettings
from craftsync.worker.store import LocalStore

WEB_DIR: Final = Path(str(importlib.resources.files("craftsync.web")))
CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
#: Seconds between keep-alive comments on the event stream.
SSE_KEEPALIVE_S: Final = 15.0
#: A request id the page makes for each sync it asks for: 32 lowercase hex digits, as a uuid4's.
REQUEST_ID: Final = re.compile(r"[0-9a-f]{32}")


class RequestSync(Protocol):
    """Queue a sync of ``entities`` (in order); every event of the runs serving it lists
    ``request_id`` in ``requests``. Returns the first run's id."""

    def __call__(self, entities: list[str], direction: str, policy: str, request_id: str | None = None) -> str: ...


@dataclass
class UiContext:
    """What the UI server needs from the session that runs it."""

    secret: str
    database: Path
    redis_url: str
    preferences: PreferenceStore
    #: The remote API settings in force (environment, saved preferences, demo server).
    remote: Callable[[], RemoteSettings | None]
    #: Whether REMOTE_API_URL fixes the remote URL (then the UI may not change it).
    remote_url_locked: bool
    #: The connection monitor's latest finding.
    connection: Callable[[], dict[str, Any]]
    #: Queue a sync: (entities, direction, policy, request id) -> run id.
    request_sync: RequestSync
    #: Called after settings change, so that the session can apply them.
    on_settings_changed: Callable[[], None] = lambda: None
    #: The remote address and key in force and where each came from.
    choice: Callable[[], RemoteChoice] = RemoteChoice
    #: Why a sync cannot run now (one sentence with what to do), or None when it can.
    sync_blocker: Callable[[], str | None] = lambda: None
    #: Runs that failed before this ISO time no longer make the status "error".
    errors_cleared_at: Callable[[], str] = lambda: ""
    #: What supervision has to say of the sync service: {"state", "message", "at"}.
    service: Callable[[], dict[str, Any]] = lambda: {"state": "ok", "message": None, "at": None}
    port: int = 0


def create_ui_app(ctx: UiContext) -> Flask:
    """The UI application for one session."""
    app = Flask(__name__, static_folder=None)
    app.extensions["craftsync.ui"] = ctx
    app.extensions["craftsync.redis"] = redis.Redis.from_url(ctx.redis_url)
    app.before_request(_guard)
    app.after_request(_headers)
    app.teardown_appcontext(_close_store)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(BrokerUnavailable, _broker_error)
    app.register_error_handler(redis.RedisError, _broker_error)  # from calls that reach Redis directly
    app.register_error_handler(LocalStoreError, _store_error)  # a damaged, unopenable, ... local file
    _routes(app)
    records_api.register(app, _store)
    return app


def _ctx() -> UiContext:
    return current_app.extensions["craftsync.ui"]


def _store() -> LocalStore:
    """This request's connection to the local database (closed at teardown)."""
    if "store" not in g:
        g.store = LocalStore(_ctx().database, migrate_schema=False)
    return g.store


def _close_store(_exc: BaseException | None) -> None:
    store = g.pop("store", None)
    if store is not None:
        store.close()


def error(status: int, code: str, message: str, **extra: Any) -> Response:
    """A JSON refusal: a code for programs, one sentence for people."""
    response = jsonify(error=code, message=message, **extra)
    response.status_code = status
    return response


# -- security ---------------------------------------------------------------------------------


def _cookie_name() -> str:
    return f"craftsync_{_ctx().port}"


def _guard() -> Response | None:
    ctx = _ctx()
    if request.host not in (f"127.0.0.1:{ctx.port}", f"localhost:{ctx.port}"):
        return error(403, "forbidden", "This server answers only on its own loopback address.")
    token = request.args.get("token") if request.path == "/" else None
    if token is not None:
        if not hmac.compare_digest(token.encode(), ctx.secret.encode()):
            return error(403, "forbidden", "Wrong launch token.")
        response = redirect("/", code=303)
        response.set_cookie(_cookie_name(), ctx.secret, httponly=True, samesite="Strict", path="/")
        return response
    presented = request.cookies.get(_cookie_name()) or request.headers.get("X-CraftSync-Token", "")
    if not hmac.compare_digest(presented.encode(), ctx.secret.encode()):
        return error(403, "forbidden", "Open the UI from the CraftSync window (missing launch secret).")
    origin = request.headers.get("Origin")
    if request.method not in ("GET", "HEAD", "OPTIONS") and origin is not None:
        if origin not in (f"http://127.0.0.1:{ctx.port}", f"http://localhost:{ctx.port}"):
            return error(403, "forbidden", "Requests from other origins are refused.")
    return None


def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


def _http_error(exc: HTTPException) -> Response:
    said = exc.description or ""
    if said == type(exc).description:  # werkzeug's stock text ("If you entered the URL manually...")
        said = f"{exc.name}."
    return error(exc.code or 500, (exc.name or "error").lower().replace(" ", "_"), said)


def _broker_error(exc: BrokerUnavailable | redis.RedisError) -> Response:
    current_app.logger.warning("the broker cannot be reached: %s", exc)
    return error(503, "broker_unavailable",
                 "The sync service cannot be reached right now: if this lasts, close CraftSync and start it again.")


def _store_error(exc: LocalStoreError) -> Response:
    current_app.logger.warning("the local database failed: %s", exc)
    return error(503, "local_database", exc.plain)


# -- routes -----------------------------------------------------------------------------------


def _routes(app: Flask) -> None:
    app.get("/")(index)
    app.get("/static/<path:name>")(static_file)
    app.get("/api/status")(status)
    app.post("/api/sync")(sync)
    app.get("/api/vocabulary")(vocabulary)
    app.get("/api/events")(events)
    app.get("/api/settings")(get_settings)
    app.put("/api/settings")(put_settings)
    app.post("/api/settings/test")(test_connection)
    app.get("/api/conflicts")(list_conflicts)
    app.post("/api/conflicts/<int:conflict_id>/resolve")(resolve_conflict)
    app.get("/api/history")(history)


def index() -> Response:
    return send_from_directory(WEB_DIR, "index.html")


def static_file(name: str) -> Response:
    return send_from_directory(WEB_DIR, name)


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        abort(400, "The body must be a JSON object.")
    return body


def status() -> Response:
    store, ctx = _store(), _ctx()
    client: redis.Redis = current_app.extensions["craftsync.redis"]
    broker = {"state": "online"}
    try:
        with broker_errors():
            syncing = running(client)
    except BrokerUnavailable:
        syncing, broker = [], {"state": "unreachable", "detail": BROKER_UNREACHABLE}
    entities = {}
    for entity in ENTITIES:
        entities[entity] = {**store.counts(entity), "last_run": store.runs.last(entity)}
    last_sync = store.runs.last_finished()
    rejected = store.rejected(limit=50)
    connection = ctx.connection()
    failed_lately = (last_sync is not None and last_sync["status"] == "failed"
                     and (last_sync["finished_at"] or "") > ctx.errors_cleared_at())
    service = ctx.service()
    if service["state"] == "failed":
        state = "error"  # nothing syncs until CraftSync is started again: that comes first
    elif syncing:
        state = "syncing"
    elif connection["state"] == "refused" or (failed_lately and connection["state"] == "online"):
        state = "error"
    else:
        state = "online" if connection["state"] == "online" else "offline"
    return jsonify(
        state=state,
        connection=connection,
        service=service,
        broker=broker,
        syncing=syncing,
        last_sync=last_sync,
        entities=entities,
        open_conflicts=len(open_conflicts(store)),
        rejected=[dict(r) for r in rejected],
    )


def sync() -> tuple[Response, int] | Response:
    body, prefs = _body(), _ctx().preferences.load()
    entities = body.get("entities") or []
    if not isinstance(entities, list) or any(e not in ENTITIES for e in entities):
        abort(400, f"entities must be a list of {', '.join(ENTITIES)} (empty for all).")
    direction = body.get("direction") or prefs.default_direction
    policy = body.get("policy") or prefs.conflict_policy
    if direction not in values(Direction):
        abort(400, f"direction must be one of {', '.join(values(Direction))}.")
    if policy not in values(Policy):
        abort(400, f"policy must be one of {', '.join(values(Policy))}.")
    request_id = body.get("request_id")
    if request_id is not None and not (isinstance(request_id, str) and REQUEST_ID.fullmatch(request_id)):
        abort(400, "request_id must be 32 lowercase hexadecimal digits (a uuid4's hex), or left out.")
    blocker = _ctx().sync_blocker()
    if blocker is not None:  # say at once why nothing would happen, rather than queue it
        return error(409, "cannot_sync", blocker)
    chosen = sync_order(entities)
    run_id = _ctx().request_sync(chosen, direction, policy, request_id)
    return jsonify(run_id=run_id, entities=chosen, request_id=request_id), 202


def vocabulary() -> Response:
    """The words the page builds its lists from (contract.vocabulary, contract.records)."""
    defaults = Preferences.model_fields
    return jsonify(
        entities=[_entity_view(entity) for entity in ENTITIES],
        all=list(ALL_ENTITIES),
        directions=list(values(Direction)),
        policies=list(values(Policy)),
        resolutions=list(values(Resolution)),
        event_types=list(values(EventType)),
        defaults={"direction": defaults["default_direction"].default, "policy": defaults["conflict_policy"].default},
    )


def _entity_view(entity: str) -> dict[str, Any]:
    return {
        "name": entity,
        "label": entity.capitalize(),
        "fields": records_api.editable(entity),
        "required": list(required_fields(entity)),
        "references": REFERENCES[entity],
    }


def _sse_data(raw: bytes | str) -> str | None:
    """A channel message as one SSE data line: a JSON object written again by json.dumps, which
    escapes every line break, so that nothing on the channel can add SSE fields (``retry:``,
    ``id:``, a second event); None for anything else, which is dropped."""
    try:
        event = json.loads(raw)
    except (ValueError, RecursionError):  # not JSON (or not UTF-8), or nested beyond reason
        return None
    return json.dumps(event) if isinstance(event, dict) else None


def events() -> Response:
    client: redis.Redis = current_app.extensions["craftsync.redis"]
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    with broker_errors():  # BrokerUnavailable: answered 503 by _broker_error
        pubsub.subscribe(channel(client))

    def stream() -> Iterator[str]:
        try:
            yield ": connected\n\n"
            while True:
                try:
                    with broker_errors():
                        message = pubsub.get_message(timeout=SSE_KEEPALIVE_S)
                except BrokerUnavailable:
                    return  # the broker is gone (the session is stopping); the page reconnects
                if message is None:
                    yield ": keep-alive\n\n"
                elif message["type"] == "message" and (data := _sse_data(message["data"])) is not None:
                    yield f"data: {data}\n\n"
        finally:
            pubsub.close()

    return Response(stream(), mimetype="text/event-stream", headers={"X-Accel-Buffering": "no"})


def _settings_view() -> dict[str, Any]:
    ctx = _ctx()
    prefs, choice = ctx.preferences.load(), ctx.choice()
    view = prefs.model_dump(exclude={"api_key_url"})
    view.update(
        remote_url=choice.url or prefs.remote_url,
        remote_source=choice.url_source,
        remote_url_locked=ctx.remote_url_locked,
        api_key_set=bool(choice.key),
        api_key_masked=masked(choice.key),
        api_key_source=choice.key_source,
        api_key_saved=bool(ctx.preferences.api_key()),
    )
    return view


def get_settings() -> Response:
    return jsonify(_settings_view())


#: Fields of the settings answer that a form may echo back; they are not settings.
_READ_ONLY_SETTINGS: Final = ("remote_url_locked", "remote_source", "api_key_set", "api_key_masked",
                              "api_key_source", "api_key_saved")


def put_settings() -> Response:
    body, ctx = _body(), _ctx()
    key = body.pop("api_key", None)
    keep_key = body.pop("keep_key", False) is True
    if key is not None and (not isinstance(key, str) or len(key) > 500):
        return field_error("api_key", "The API key must be text of at most 500 characters.")
    for name in (*_READ_ONLY_SETTINGS, "api_key_url"):
        body.pop(name, None)
    before = ctx.choice()
    if isinstance(body.get("remote_url"), str):
        body["remote_url"] = body["remote_url"].strip().rstrip("/")  # as the preferences store it
        if body["remote_url"] == (before.url or "") and before.url_source != "saved":
            del body["remote_url"]  # the form echoed the address in force (the demo server's): not a choice
    if "remote_url" in body and ctx.remote_url_locked:
        return field_error("remote_url", "The server address is set by REMOTE_API_URL; change it there.", 409)
    new_url = body.get("remote_url")
    saved_key = ctx.preferences.api_key()
    if new_url and new_url != before.url and not key and saved_key and not keep_key:
        return field_error(
            "api_key", f"Type the API key for {new_url}, or choose to use the saved key with it.", 409,
            code="key_needed",
        )
    try:
        prefs = ctx.preferences.update(body)
    except InvalidPreferences as exc:
        return field_error(exc.field, exc.plain)
    url_now = ctx.choice().url
    if key is not None:
        ctx.preferences.set_api_key(key.strip())
        ctx.preferences.update({"api_key_url": url_now if key.strip() else None})
    elif keep_key and saved_key and prefs.remote_url:
        ctx.preferences.update({"api_key_url": prefs.remote_url})
    ctx.on_settings_changed()
    return jsonify(_settings_view())


def field_error(name: str, message: str, status: int = 400, *, code: str = "invalid") -> Response:
    """A refusal of one settings field: the sentence goes next to that field in the form."""
    return error(status, code, message, fields={name: message})


def test_connection() -> Response:
    body = request.get_json(silent=True) if request.content_length else {}
    if not isinstance(body, dict) or any(not isinstance(body.get(k, ""), str) for k in ("remote_url", "api_key")):
        abort(400, "Send {\"remote_url\", \"api_key\"} as strings, or nothing to test the saved settings.")
    current = _ctx().remote()
    url = (body.get("remote_url") or "").strip().rstrip("/") or (current.base_url if current else None)
    key = body.get("api_key") or None
    if key is None and current is not None and url == current.base_url:
        key = current.api_key  # the saved key goes to the address it was saved for, and nowhere else
    if not url:
        return jsonify(ok=False, message="Enter the server address first.", latency_ms=None)
    if not key:
        return jsonify(ok=False, message=f"Type the API key for {url} to test it.", latency_ms=None)
    started = time.monotonic()
    try:
        settings = RemoteSettings(base_url=url.rstrip("/"), api_key=key, max_attempts=1, timeout_s=5.0)
        if current:
            settings = replace(settings, verify=current.verify)
        with RemoteClient(settings) as client:
            health = client.health()
            client.pull("customers", limit=1)  # proves the key too
            skew = client.clock_skew_s
    except SyncError as exc:  # unreachable, refused, or unusable settings
        return jsonify(ok=False, message=exc.plain, latency_ms=round((time.monotonic() - started) * 1000))
    latency = round((time.monotonic() - started) * 1000)
    return jsonify(ok=True, message="Connected", server_time=health.get("server_time"), clock_skew_s=skew,
                   latency_ms=latency)


def list_conflicts() -> Response:
    return jsonify(conflicts=[c.as_dict() for c in open_conflicts(_store())])


def resolve_conflict(conflict_id: int) -> Response:
    body = _body()
    use, data = body.get("use"), body.get("data")
    if use not in CHOICES:
        abort(400, "use must be local, remote or merged.")
    if data is not None and not isinstance(data, dict):
        abort(400, "data must be an object of field values.")
    store = _store()
    entity = next((c.entity for c in open_conflicts(store) if c.id == conflict_id), None)
    try:
        record = resolve(store, conflict_id, use, data)
    except ConflictNotFound as exc:
        abort(404, str(exc))
    except InvalidResolution as exc:
        abort(400, str(exc))
    assert entity is not None
    _ctx().request_sync([entity], Direction.PUSH, _ctx().preferences.load().conflict_policy)
    return jsonify(record=record)


def history() -> Response:
    limit = request.args.get("limit", "50")
    if not re.fullmatch(r"[0-9]{1,4}", limit) or not 1 <= int(limit) <= 1000:  # not isdigit(): "²" is a digit
        abort(400, "limit must be a whole number from 1 to 1000.")
    store = _store()
    return jsonify(runs=store.runs.history(int(limit)), totals=store.runs.totals())

