"""Bad input of every kind in §5 gets the documented status and writes nothing.

Wherever a bad request could write, the test runs on every backend (``database_url``) and
the bad request is built so that it *would* write if the server's guard were missing (a
valid record behind a wrong key, a valid batch that is merely too large, ...); afterwards
the test reads the entity back and checks that nothing changed. Every error answer must be
the JSON error shape ``{"error", "message"}`` and must never echo the API key.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from craftsync.server.app import create_app
from craftsync.server.config import ServerSettings
from tests.conftest import API_KEY

AUTH = {"Authorization": f"Bearer {API_KEY}"}
OTHER_KEY = "second-key-9876543210"
ENTITIES = ("customers", "quotes", "orders")
MIB = 1024 * 1024

# --------------------------------------------------------------------------- helpers


def make_app(url: str, *, rate_limit: str = "100000/minute", keys: tuple[str, ...] = (API_KEY,)) -> Flask:
    return create_app(ServerSettings(database_url=url, api_keys=keys, rate_limit=rate_limit))


@pytest.fixture
def make(database_url: str) -> Iterator[Callable[..., Flask]]:
    """make_app on the test's database, closing the apps' connections before it is dropped."""
    made: list[Flask] = []

    def _make(**options: Any) -> Flask:
        made.append(make_app(database_url, **options))
        return made[-1]

    yield _make
    for app in made:
        app.extensions["craftsync.engine"].dispose()


@pytest.fixture
def client(make: Callable[..., Flask]) -> FlaskClient:
    """A client of an app on a fresh database, on every backend."""
    return make().test_client()


@pytest.fixture
def sqlite_client(sqlite_url: str) -> Iterator[FlaskClient]:
    """A client of an app on a fresh SQLite database, where no write can happen anyway."""
    app = make_app(sqlite_url)
    yield app.test_client()
    app.extensions["craftsync.engine"].dispose()


def new_id() -> str:
    return uuid.uuid4().hex


def customer(**fields: Any) -> dict[str, Any]:
    return {"id": new_id(), "name": "Ada Lovelace", **fields}


def post_json(client: FlaskClient, path: str, body: Any, headers: dict[str, str] | None = None) -> TestResponse:
    return client.post(path, data=json.dumps(body), content_type="application/json", headers=AUTH if headers is None else headers)


def snapshot(client: FlaskClient, headers: dict[str, str] = AUTH) -> dict[str, list[dict[str, Any]]]:
    """Every record of every entity, as the API serves it."""
    state = {}
    for entity in ENTITIES:
        response = client.get(f"/api/{entity}?limit=5000", headers=headers)
        assert response.status_code == 200, response.get_data(as_text=True)
        page = response.get_json()
        assert page["has_more"] is False
        state[entity] = page["records"]
    return state


EMPTY: dict[str, list[dict[str, Any]]] = {entity: [] for entity in ENTITIES}


def assert_error(response: TestResponse, status: int, *, key: str = API_KEY) -> dict[str, Any]:
    """The response is the JSON error shape with ``status`` and does not contain the key."""
    text = response.get_data(as_text=True)
    assert response.status_code == status, f"expected {status}, got {response.status_code}: {text[:500]}"
    assert response.mimetype == "application/json", response.mimetype
    body = response.get_json()
    assert isinstance(body, dict) and set(body) == {"error", "message"}, body
    assert isinstance(body["error"], str) and body["error"], body
    assert isinstance(body["message"], str) and body["message"], body
    assert_no_key(response, key)
    return body


def assert_no_key(response: TestResponse, key: str = API_KEY) -> None:
    assert key not in response.get_data(as_text=True), "the answer echoes the API key"
    assert all(key not in value for value in response.headers.values()), "a header echoes the API key"


def first_block(client: FlaskClient) -> dict[str, Any]:
    """Reserve a block of quote numbers; its first number shows whether one was issued before."""
    response = post_json(client, "/api/number-blocks", {"entity": "quotes", "device_id": "dev-check", "size": 5})
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


# --------------------------------------------------------------------------- unknown entity


def test_unknown_entity_is_404_json_error_and_writes_nothing(client: FlaskClient) -> None:
    # Given an empty server
    # When a valid-looking record is pulled from and pushed to entities that do not exist
    for entity in ("widgets", "customer", "Customers", "number_blocks", "alembic_version"):
        pulled = client.get(f"/api/{entity}", headers=AUTH)
        pushed = post_json(client, f"/api/{entity}", customer())
        batched = post_json(client, f"/api/{entity}", {"records": [customer()]})
        one = client.get(f"/api/{entity}/{new_id()}", headers=AUTH)
        # Then each answer is a 404 JSON error
        for response in (pulled, pushed, batched, one):
            assert_error(response, 404)
    # And nothing was written anywhere
    assert snapshot(client) == EMPTY


# --------------------------------------------------------------------------- malformed bodies


MALFORMED_JSON = [
    pytest.param(b'{"id": "', id="truncated"),
    pytest.param(b"not json at all", id="plain-text"),
    pytest.param(b"{'id': 'single-quoted'}", id="single-quotes"),
    pytest.param(b'{"records": [{"id": "%s", "name": "x"},]}' % new_id().encode(), id="trailing-comma"),
    pytest.param(b"", id="empty"),
    pytest.param(b"\xff\xfe\x00garbage", id="binary"),
    pytest.param(b"[" * 1000 + b"]" * 1000, id="nested-1000-deep"),
]


@pytest.mark.parametrize("body", MALFORMED_JSON)
def test_malformed_json_is_400_and_writes_nothing(client: FlaskClient, body: bytes) -> None:
    # Given a server that already holds one record
    seeded = post_json(client, "/api/customers", customer())
    assert seeded.status_code == 201
    before = snapshot(client)
    # When a body that is not valid JSON is posted as JSON to an entity and to number-blocks
    pushed = client.post("/api/customers", data=body, content_type="application/json", headers=AUTH)
    blocks = client.post("/api/number-blocks", data=body, content_type="application/json", headers=AUTH)
    # Then both answer 400 with a JSON error
    assert_error(pushed, 400)
    assert_error(blocks, 400)
    # And nothing changed: the same records, and no number block was issued
    assert snapshot(client) == before
    assert first_block(client)["first"] == 1


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "text/json", "application/xml"],
)
def test_non_json_content_type_is_400_and_writes_nothing(client: FlaskClient, content_type: str | None) -> None:
    # Given an empty server, and bodies that would be valid if they were sent as JSON
    record = json.dumps(customer())
    batch = json.dumps({"records": [customer()]})
    block = json.dumps({"entity": "quotes", "device_id": "dev-1", "size": 10})
    # When they are posted with a content type that is not JSON
    answers = [
        client.post(path, data=body, content_type=content_type, headers=AUTH)
        for path, body in (("/api/customers", record), ("/api/customers", batch), ("/api/number-blocks", block))
    ]
    # Then each answer is a 400 JSON error
    for response in answers:
        assert_error(response, 400)
    # And nothing was written: no records, no number block issued
    assert snapshot(client) == EMPTY
    assert first_block(client)["first"] == 1


# --------------------------------------------------------------------------- authentication


BAD_AUTH = [
    pytest.param({}, id="missing"),
    pytest.param({"Authorization": ""}, id="empty"),
    pytest.param({"Authorization": "Bearer"}, id="scheme-without-key"),
    pytest.param({"Authorization": "Bearer    "}, id="scheme-with-blank-key"),
    pytest.param({"Authorization": API_KEY}, id="key-without-scheme"),
    pytest.param({"Authorization": f"Basic {API_KEY}"}, id="basic-scheme"),
    pytest.param({"Authorization": f"Token {API_KEY}"}, id="token-scheme"),
    pytest.param({"Authorization": f"Bearer{API_KEY}"}, id="no-space"),
    pytest.param({"Authorization": "Bearer wrong-key"}, id="wrong-key"),
    pytest.param({"Authorization": f"Bearer {API_KEY}x"}, id="key-plus-one-char"),
    pytest.param({"Authorization": f"Bearer {API_KEY[:-1]}"}, id="key-minus-one-char"),
    pytest.param({"Authorization": f"Bearer {API_KEY.upper()}"}, id="key-wrong-case"),
    pytest.param({"X-Api-Key": API_KEY}, id="key-in-other-header"),
]


@pytest.mark.parametrize("headers", BAD_AUTH)
def test_missing_wrong_or_malformed_key_is_401_json_error_and_writes_nothing(
    client: FlaskClient, headers: dict[str, str]
) -> None:
    # Given a server holding one customer
    seeded = post_json(client, "/api/customers", customer(name="Secret Customer"))
    assert seeded.status_code == 201
    seeded_id = seeded.get_json()["id"]
    before = snapshot(client)
    # When every entity endpoint is called without a valid key, with requests that would
    # read or write if they were authorised
    answers = {
        "pull": client.get("/api/customers", headers=headers),
        "pull-with-args": client.get("/api/customers?since=0&limit=10&count=true", headers=headers),
        "get-one": client.get(f"/api/customers/{seeded_id}", headers=headers),
        "push-one": post_json(client, "/api/customers", customer(), headers),
        "push-batch": post_json(client, "/api/quotes", {"records": [{"id": new_id()}]}, headers),
        "number-block": post_json(client, "/api/number-blocks", {"entity": "quotes", "device_id": "d", "size": 3}, headers),
    }
    # Then each answer is a 401 JSON error that neither leaks data nor echoes the key
    for name, response in answers.items():
        body = assert_error(response, 401)
        assert body["error"] == "unauthorized", name
        assert "Secret Customer" not in response.get_data(as_text=True), name
    # And nothing was written
    assert snapshot(client) == before
    assert first_block(client)["first"] == 1


def test_a_key_the_server_does_not_hold_is_401_even_when_another_server_would_accept_it(sqlite_url: str) -> None:
    # Given a server that accepts only OTHER_KEY
    client = make_app(sqlite_url, keys=(OTHER_KEY,)).test_client()
    # When the test's usual key is presented
    response = client.get("/api/customers", headers=AUTH)
    # Then it is refused with a JSON error that does not echo either key
    assert_error(response, 401)
    assert_no_key(response, OTHER_KEY)


def test_a_server_with_no_keys_configured_refuses_every_entity_request(sqlite_url: str) -> None:
    # Given a server started without any API key
    client = make_app(sqlite_url, keys=()).test_client()
    # When requests arrive with some bearer key, or none
    for headers in (AUTH, {"Authorization": "Bearer "}, {}):
        # Then they are refused: an empty key list never means "open to all"
        assert_error(client.get("/api/customers", headers=headers), 401)
        assert_error(post_json(client, "/api/customers", customer(), headers), 401)


def test_health_needs_no_key(sqlite_client: FlaskClient) -> None:
    # Given a running server
    # When /api/health is called without any Authorization header
    response = sqlite_client.get("/api/health")
    # Then it answers 200 with the documented body
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok"
    assert body["message"] == "Connected"
    assert isinstance(body["server_time"], str) and body["server_time"].endswith("Z")


# --------------------------------------------------------------------------- size limits


def test_body_over_16_mib_is_413_and_writes_nothing(client: FlaskClient) -> None:
    # Given a batch of valid records (within the 5000-record cap) whose body is ~17 MiB
    records = [customer(notes="n" * 10_000) for _ in range(1_750)]
    body = json.dumps({"records": records}).encode()
    assert 16 * MIB < len(body) < 18 * MIB
    # When it is pushed
    response = client.post("/api/customers", data=body, content_type="application/json", headers=AUTH)
    # Then the server answers 413 with a JSON error
    assert_error(response, 413)
    # And none of the records was written
    assert snapshot(client) == EMPTY


def test_body_of_exactly_16_mib_is_not_refused_for_its_size(sqlite_client: FlaskClient) -> None:
    # Given a body of exactly 16 MiB (the limit is "over 16 MiB")
    record = customer(notes="")
    filler = 16 * MIB - len(json.dumps(record).encode())
    body = json.dumps(record).encode() + b" " * filler
    assert len(body) == 16 * MIB
    # When it is pushed
    response = sqlite_client.post("/api/customers", data=body, content_type="application/json", headers=AUTH)
    # Then it is accepted: the size limit does not bite at the limit itself
    assert response.status_code == 201, response.get_data(as_text=True)[:300]


def test_batch_over_5000_records_is_400_and_writes_nothing(client: FlaskClient) -> None:
    # Given a batch of 5001 otherwise valid records
    records = [{"id": new_id(), "name": f"c{i}"} for i in range(5_001)]
    # When it is pushed
    response = post_json(client, "/api/customers", {"records": records})
    # Then it is refused as a whole with a 400 JSON error
    assert_error(response, 400)
    # And not one record was written
    assert snapshot(client) == EMPTY


def test_batch_of_exactly_5000_records_is_accepted(sqlite_client: FlaskClient) -> None:
    # Given a batch of exactly 5000 valid records
    records = [{"id": new_id(), "name": f"c{i}"} for i in range(5_000)]
    # When it is pushed
    response = post_json(sqlite_client, "/api/customers", {"records": records})
    # Then every record is created
    assert response.status_code == 200
    assert [r["status"] for r in response.get_json()["results"]] == ["created"] * 5_000


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"records": "not a list"}, id="records-string"),
        pytest.param({"records": {"id": "x"}}, id="records-object"),
        pytest.param({"records": None}, id="records-null"),
    ],
)
def test_batch_whose_records_is_not_a_list_is_400_and_writes_nothing(client: FlaskClient, body: Any) -> None:
    # Given an empty server
    # When a batch whose 'records' is not a list is pushed
    response = post_json(client, "/api/customers", body)
    # Then it is a 400 JSON error and nothing is written
    assert_error(response, 400)
    assert snapshot(client) == EMPTY


# --------------------------------------------------------------------------- invalid records


def quote(**fields: Any) -> dict[str, Any]:
    return {"id": new_id(), **fields}


def order(**fields: Any) -> dict[str, Any]:
    return {"id": new_id(), **fields}


#: (entity, record, a word the reason must mention)
INVALID_RECORDS = [
    pytest.param("customers", customer(name=123), "name", id="name-int"),
    pytest.param("customers", customer(name=None), "name", id="name-null"),
    pytest.param("customers", {"id": new_id()}, "name", id="name-missing"),
    pytest.param("customers", customer(name="x" * 201), "name", id="name-201-chars"),
    pytest.param("customers", customer(email="not an email"), "email", id="email-bad"),
    pytest.param("customers", customer(colour="red"), "colour", id="unknown-field"),
    pytest.param("customers", customer(version="3"), "version", id="version-string"),
    pytest.param("customers", customer(base_version="1"), "base_version", id="base-version-string"),
    pytest.param("customers", customer(base_version=-1), "base_version", id="base-version-negative"),
    pytest.param("customers", customer(created_at="2026-13-45T00:00:00Z"), "created_at", id="created-at-month-13"),
    pytest.param("customers", customer(updated_at="yesterday"), "updated_at", id="updated-at-yesterday"),
    pytest.param("customers", customer(deleted_at=12345), "deleted_at", id="deleted-at-int"),
    pytest.param("customers", customer(id="not-a-uuid"), "id", id="id-not-a-uuid"),
    pytest.param("customers", customer(id=uuid.uuid4().hex.upper()), "id", id="id-uppercase-hex"),
    pytest.param("customers", customer(id=str(uuid.uuid4())), "id", id="id-36-char-dashed"),
    pytest.param("customers", customer(id=12345), "id", id="id-int"),
    pytest.param("customers", {"name": "no id"}, "id", id="id-missing"),
    pytest.param("quotes", quote(total_amount=12.5), "total_amount", id="total-float"),
    pytest.param("quotes", quote(total_amount="12.345"), "total_amount", id="total-3-decimals"),
    pytest.param("quotes", quote(total_amount="twelve"), "total_amount", id="total-not-a-number"),
    pytest.param("quotes", quote(total_amount="NaN"), "total_amount", id="total-nan"),
    pytest.param("quotes", quote(total_amount="1e12"), "total_amount", id="total-too-large"),
    pytest.param("quotes", quote(total_amount=True), "total_amount", id="total-bool"),
    pytest.param("quotes", quote(discount_percent="10.1234"), "discount_percent", id="percent-4-decimals"),
    pytest.param("quotes", quote(valid_until="2026-13-45"), "valid_until", id="date-month-13"),
    pytest.param("quotes", quote(valid_until="yesterday"), "valid_until", id="date-yesterday"),
    pytest.param("quotes", quote(customer_id="not-a-uuid"), "customer_id", id="reference-not-a-uuid"),
    pytest.param("orders", order(order_date="2026-13-45"), "order_date", id="order-date-month-13"),
    pytest.param("orders", order(delivery_date="yesterday"), "delivery_date", id="delivery-date-yesterday"),
    pytest.param("orders", order(total_amount=12.5), "total_amount", id="order-total-float"),
    pytest.param("orders", order(quote_id=str(uuid.uuid4())), "quote_id", id="order-quote-id-dashed"),
    pytest.param("orders", order(order_number="O-" + "9" * 40), "order_number", id="order-number-too-long"),
    pytest.param(
        "customers", customer(created_at="0001-01-01T00:00:00+01:00"), "created_at",
        id="created-at-before-year-1-in-utc",
    ),
    pytest.param(
        "customers", customer(updated_at="9999-12-31T23:59:59-01:00"), "updated_at",
        id="updated-at-after-year-9999-in-utc",
    ),
    pytest.param("quotes", quote(total_amount="1e26"), "total_amount", id="total-1e26"),
    pytest.param("quotes", quote(total_amount=10**26), "total_amount", id="total-int-1e26"),
    pytest.param("quotes", quote(total_amount=1500), "total_amount", id="total-json-integer"),
    pytest.param("quotes", quote(tax_percent=20), "tax_percent", id="percent-json-integer"),
    pytest.param("customers", customer(email="ann@example.com\n"), "email", id="email-trailing-newline"),
    pytest.param(
        "customers", customer(id=uuid.uuid4().hex + "\n"), "id", id="id-trailing-newline"
    ),
]


@pytest.mark.parametrize(("entity", "record", "field"), INVALID_RECORDS)
def test_invalid_record_is_rejected_with_reason_in_batch_and_422_single_and_writes_nothing(
    client: FlaskClient, entity: str, record: dict[str, Any], field: str
) -> None:
    # Given an empty server
    # When the invalid record is pushed in a batch
    batch = post_json(client, f"/api/{entity}", {"records": [record]})
    # Then the batch answers 200 with one 'rejected' result that gives a reason naming the field
    assert batch.status_code == 200, batch.get_data(as_text=True)
    (result,) = batch.get_json()["results"]
    assert result["status"] == "rejected"
    assert result["id"] == (record["id"] if isinstance(record.get("id"), str) else None)
    assert isinstance(result.get("reason"), str) and field in result["reason"], result
    assert_no_key(batch)
    # When the same record is pushed on its own
    single = post_json(client, f"/api/{entity}", record)
    # Then it answers 422 with the same kind of result
    assert single.status_code == 422, single.get_data(as_text=True)
    body = single.get_json()
    assert body["status"] == "rejected"
    assert isinstance(body.get("reason"), str) and field in body["reason"], body
    assert_no_key(single)
    # And nothing was written
    assert snapshot(client) == EMPTY


@pytest.mark.parametrize(
    "body",
    [
        pytest.param([customer()], id="bare-list"),
        pytest.param("a string", id="string"),
        pytest.param(42, id="number"),
        pytest.param({"records": [customer()], "extra": 1}, id="records-plus-extra-key"),
    ],
)
def test_body_that_is_no_record_is_refused_and_writes_nothing(client: FlaskClient, body: Any) -> None:
    # Given an empty server
    # When a JSON body that is neither one record nor {"records": [...]} is pushed
    response = post_json(client, "/api/customers", body)
    # Then it is refused (400, or 422 as a rejected single record), never applied
    assert response.status_code in (400, 422), response.get_data(as_text=True)
    if response.status_code == 400:
        assert_error(response, 400)
    else:
        assert response.get_json()["status"] == "rejected"
    assert snapshot(client) == EMPTY


def test_one_bad_record_in_a_batch_rejects_only_that_record(client: FlaskClient) -> None:
    # Given a batch of good customers with one bad one in the middle
    good_first, good_last = customer(name="First"), customer(name="Last")
    bad = customer(name=12345)
    # When it is pushed
    response = post_json(client, "/api/customers", {"records": [good_first, bad, good_last]})
    # Then the answer is 200 with one result per record, in order: only the bad one rejected
    assert response.status_code == 200
    results = response.get_json()["results"]
    assert [(r["id"], r["status"]) for r in results] == [
        (good_first["id"], "created"),
        (bad["id"], "rejected"),
        (good_last["id"], "created"),
    ]
    assert "name" in results[1]["reason"]
    # And exactly the good ones were written
    stored = snapshot(client)["customers"]
    assert sorted((r["id"], r["name"]) for r in stored) == sorted(
        [(good_first["id"], "First"), (good_last["id"], "Last")]
    )


def test_rejected_records_in_a_batch_do_not_disturb_the_others_on_quotes(client: FlaskClient) -> None:
    # Given a batch of quotes in which some carry bad money or dates
    good = [quote(total_amount="10.00"), quote(total_amount="20.50", valid_until="2026-06-30")]
    bad = [quote(total_amount=12.5), quote(valid_until="2026-13-45"), quote(total_amount="1.999")]
    batch = [good[0], bad[0], bad[1], good[1], bad[2]]
    # When it is pushed
    response = post_json(client, "/api/quotes", {"records": batch})
    # Then the bad ones are rejected, the good ones created
    assert response.status_code == 200
    statuses = {r["id"]: r["status"] for r in response.get_json()["results"]}
    assert statuses == {**{q["id"]: "created" for q in good}, **{q["id"]: "rejected" for q in bad}}
    # And only the good ones are stored, with their canonical values
    stored = {r["id"]: r for r in snapshot(client)["quotes"]}
    assert set(stored) == {q["id"] for q in good}
    assert stored[good[1]["id"]]["total_amount"] == "20.50"
    assert stored[good[1]["id"]]["valid_until"] == "2026-06-30"


def test_nul_character_in_a_string_is_rejected_on_every_backend(client: FlaskClient, database_url: str) -> None:
    # Given a batch of a good customer and one whose name holds a NUL character
    good, odd = customer(name="Good"), customer(name="a\x00b")
    # When it is pushed
    response = post_json(client, "/api/customers", {"records": [good, odd]})
    # Then the batch is answered and the good record is applied
    assert response.status_code == 200, response.get_data(as_text=True)
    first, second = response.get_json()["results"]
    assert first["status"] == "created"
    stored = {r["id"]: r for r in snapshot(client)["customers"]}
    # And the odd record is rejected with a reason (PostgreSQL text cannot hold NUL)
    assert second["status"] == "rejected" and "NUL" in second["reason"]
    assert set(stored) == {good["id"]}


def test_an_empty_date_amount_or_reference_is_stored_as_null_and_empty_text_as_empty(client: FlaskClient) -> None:
    # Given a customer, and records whose typed fields a form left empty or blank
    owner = customer(email="", notes="  ")
    post_json(client, "/api/customers", owner)
    quote_id = new_id()
    quote = {"id": quote_id, "customer_id": owner["id"], "total_amount": "", "discount_percent": " ",
             "valid_until": "", "created_by": ""}
    order = {"id": new_id(), "quote_id": "", "customer_id": owner["id"], "order_date": "  ", "total_amount": ""}
    # When they are pushed
    results = [post_json(client, f"/api/{entity}", record) for entity, record in (("quotes", quote), ("orders", order))]
    # Then they are created, not refused: empty typed fields hold null, empty text stays as sent
    assert [r.status_code for r in results] == [201, 201], [r.get_json() for r in results]
    stored = {entity: {r["id"]: r for r in records} for entity, records in snapshot(client).items()}
    kept = stored["customers"][owner["id"]]
    assert (kept["email"], kept["notes"]) == ("", "  ")
    held = stored["quotes"][quote_id]
    assert (held["total_amount"], held["discount_percent"], held["valid_until"], held["created_by"]) == (None, None, None, "")
    placed = stored["orders"][order["id"]]
    assert (placed["quote_id"], placed["order_date"], placed["total_amount"]) == (None, None, None)


def test_a_record_that_is_only_an_id_changes_nothing_and_a_new_one_needs_its_required_fields(
    client: FlaskClient,
) -> None:
    # Given a customer
    existing = customer(city="Leeds")
    post_json(client, "/api/customers", existing)
    before = snapshot(client)
    # When a record of only its id is pushed, and one of only a new id
    same = post_json(client, "/api/customers", {"id": existing["id"]})
    new = post_json(client, "/api/customers", {"id": new_id()})
    # Then the first is unchanged and the second is refused for its missing name; nothing is written
    assert (same.status_code, same.get_json()["status"]) == (200, "unchanged")
    assert (new.status_code, new.get_json()["status"]) == (422, "rejected")
    assert "name" in new.get_json()["reason"]
    assert snapshot(client) == before


# --------------------------------------------------------------------------- number blocks


BAD_NUMBER_BLOCKS: list[Any] = [
    {"device_id": "dev-1", "size": 5},
    {"entity": "customers", "device_id": "dev-1", "size": 5},
    {"entity": "QUOTES", "device_id": "dev-1", "size": 5},
    {"entity": None, "device_id": "dev-1", "size": 5},
    {"entity": 1, "device_id": "dev-1", "size": 5},
    {"entity": "quotes", "size": 5},
    {"entity": "quotes", "device_id": "", "size": 5},
    {"entity": "quotes", "device_id": "d" * 65, "size": 5},
    {"entity": "quotes", "device_id": 7, "size": 5},
    {"entity": "quotes", "device_id": "dev-1", "size": 0},
    {"entity": "quotes", "device_id": "dev-1", "size": -1},
    {"entity": "quotes", "device_id": "dev-1", "size": 10_001},
    {"entity": "quotes", "device_id": "dev-1", "size": True},
    {"entity": "quotes", "device_id": "dev-1", "size": "5"},
    {"entity": "quotes", "device_id": "dev-1", "size": 1.5},
    {"entity": "quotes", "device_id": "dev-1", "size": 5, "extra": 1},
    [{"entity": "quotes", "device_id": "dev-1", "size": 5}],
    "quotes",
]


def test_bad_number_block_request_is_400_and_issues_nothing(client: FlaskClient) -> None:
    # Given an empty server
    for body in BAD_NUMBER_BLOCKS:
        # When a malformed number-block request is sent
        response = post_json(client, "/api/number-blocks", body)
        # Then it is a 400 JSON error
        assert response.status_code == 400, (body, response.get_data(as_text=True))
        assert_error(response, 400)
    # And no block was issued: the first real block starts at 1
    assert first_block(client)["first"] == 1


@pytest.mark.parametrize(
    "entity", [pytest.param({}, id="object"), pytest.param(["quotes"], id="list")]
)
def test_number_block_request_with_a_non_string_entity_is_400(sqlite_client: FlaskClient, entity: Any) -> None:
    # Given an empty server
    # When a number block is asked for an entity that is not a string
    response = post_json(sqlite_client, "/api/number-blocks", {"entity": entity, "device_id": "dev-1", "size": 5})
    # Then it is a 400 JSON error, not a crash, and no block was issued
    assert_error(response, 400)
    assert first_block(sqlite_client)["first"] == 1


# --------------------------------------------------------------------------- query parameters


BAD_QUERIES = [
    pytest.param("since=-1", id="since-negative"),
    pytest.param("since=abc", id="since-abc"),
    pytest.param("since=1.5", id="since-fraction"),
    pytest.param("since=", id="since-empty"),
    pytest.param("since=99999999999999999999999", id="since-beyond-bigint"),
    pytest.param("limit=0", id="limit-zero"),
    pytest.param("limit=5001", id="limit-5001"),
    pytest.param("limit=-5", id="limit-negative"),
    pytest.param("limit=ten", id="limit-word"),
    pytest.param("updatedSince=garbage", id="updatedSince-garbage"),
    pytest.param("updatedSince=2026-13-45T00:00:00Z", id="updatedSince-month-13"),
    pytest.param("updatedSince=0001-01-01T00:00:00%2B01:00", id="updatedSince-before-year-1-in-utc"),
    pytest.param("count=null", id="count-null"),
    pytest.param("count=yes", id="count-yes"),
    pytest.param("limit=5&limit=6", id="limit-twice"),
]


@pytest.mark.parametrize("query", BAD_QUERIES)
def test_bad_query_parameter_is_400_json_error(sqlite_client: FlaskClient, query: str) -> None:
    # Given a server holding one record, so that a page would not be empty
    assert post_json(sqlite_client, "/api/customers", customer()).status_code == 201
    # When an entity is pulled with a bad query parameter
    response = sqlite_client.get(f"/api/customers?{query}", headers=AUTH)
    # Then the answer is a 400 JSON error, not a page
    assert_error(response, 400)


@pytest.mark.parametrize("query", ["since=0", "limit=1", "limit=5000", "updatedSince=2020-01-01T00:00:00Z", "count=true"])
def test_boundary_query_parameters_are_accepted(sqlite_client: FlaskClient, query: str) -> None:
    # Given a server holding one record
    assert post_json(sqlite_client, "/api/customers", customer()).status_code == 201
    # When it is pulled with a parameter at the edge of what is allowed
    response = sqlite_client.get(f"/api/customers?{query}", headers=AUTH)
    # Then the page comes back with the record
    assert response.status_code == 200, response.get_data(as_text=True)
    assert len(response.get_json()["records"]) == 1


# --------------------------------------------------------------------------- rate limit


def test_over_the_rate_limit_is_429_with_retry_after_and_writes_nothing(make: Callable[..., Flask]) -> None:
    # Given a server that allows 3 requests a minute per key, and accepts two keys
    client = make(rate_limit="3/minute", keys=(API_KEY, OTHER_KEY)).test_client()
    other = {"Authorization": f"Bearer {OTHER_KEY}"}
    # When the first key spends its budget on three pushes
    spent = [customer() for _ in range(3)]
    for record in spent:
        assert post_json(client, "/api/customers", record).status_code == 201
    # And then pushes a fourth valid record
    limited = post_json(client, "/api/customers", customer())
    # Then that push is refused with 429, a JSON error and a Retry-After in seconds
    body = assert_error(limited, 429)
    assert body["error"] == "rate_limited"
    retry_after = limited.headers.get("Retry-After")
    assert retry_after is not None, dict(limited.headers)
    assert retry_after.isdigit() and 1 <= int(retry_after) <= 60, retry_after
    # When a second key asks, its budget is its own: it gets through
    seen = client.get("/api/customers?limit=5000", headers=other)
    assert seen.status_code == 200, seen.get_data(as_text=True)
    # And the refused record was not written: only the three accepted ones are stored
    assert sorted(r["id"] for r in seen.get_json()["records"]) == sorted(r["id"] for r in spent)
    # And health needs no budget
    assert client.get("/api/health").status_code == 200


def test_rate_limit_is_one_budget_per_key_across_all_endpoints(sqlite_url: str) -> None:
    # Given a server that allows 3 requests a minute per key (SPEC §2: RATE_LIMIT is a per-key limit)
    client = make_app(sqlite_url, rate_limit="3/minute").test_client()
    # When the key spends its budget on pulls
    for _ in range(3):
        assert client.get("/api/customers", headers=AUTH).status_code == 200
    # And then pushes a valid record to another endpoint
    limited = post_json(client, "/api/customers", customer())
    # Then the push is refused: the budget belongs to the key, not to the endpoint
    assert_error(limited, 429)
    assert client.get("/api/customers", headers={"Authorization": f"Bearer {OTHER_KEY}"}).status_code == 401


def test_rate_limit_429_does_not_echo_the_key(sqlite_url: str) -> None:
    # Given a server that allows 1 request a minute
    client = make_app(sqlite_url, rate_limit="1/minute").test_client()
    assert client.get("/api/customers", headers=AUTH).status_code == 200
    # When the budget is exceeded
    response = client.get("/api/customers", headers=AUTH)
    # Then the 429 neither in its body nor in any header shows the key
    assert_error(response, 429)
    assert_no_key(response)


# --------------------------------------------------------------------------- methods


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        pytest.param("PUT", "/api/customers", {"GET", "HEAD", "OPTIONS", "POST"}, id="put-entity"),
        pytest.param("POST", "/api/health", {"GET", "HEAD", "OPTIONS"}, id="post-health"),
        pytest.param("GET", "/api/number-blocks", {"OPTIONS", "POST"}, id="get-number-blocks"),
    ],
)
def test_a_method_an_endpoint_does_not_have_is_405_with_allow(
    sqlite_client: FlaskClient, method: str, path: str, allowed: set[str]
) -> None:
    # When an endpoint is called with a method it does not have
    response = sqlite_client.open(path, method=method, headers=AUTH)
    # Then it is a 405 JSON error whose Allow header lists the methods it has
    assert_error(response, 405)
    assert set(response.headers["Allow"].split(", ")) == allowed
