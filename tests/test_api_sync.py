"""The remote API's sync guarantees (spec §5), on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text

from craftsync.server.schema import metadata
from tests.support.api import AUTH, customer, make_app, new_id, pull_all, push


def test_pagination_walks_every_record_once_while_another_thread_writes(database_url: str) -> None:
    # Given 10,000 customers on the server
    app = make_app(database_url)
    client = app.test_client()
    originals = [customer() for _ in range(10_000)]
    for start in range(0, len(originals), 2500):
        push(client, "customers", originals[start : start + 2500])

    # When one thread walks them in pages of 300 while another keeps creating customers
    stop = threading.Event()
    written: list[str] = []

    def writer() -> None:
        writer_client = app.test_client()
        while not stop.is_set():
            batch = [customer() for _ in range(20)]
            push(writer_client, "customers", batch)
            written.extend(r["id"] for r in batch)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        seen, cursor = pull_all(client, "customers", limit=300)
    finally:
        stop.set()
        thread.join()
    rest, _ = pull_all(client, "customers", since=cursor, limit=300)

    # Then every record, old or written meanwhile, comes exactly once
    ids = [r["id"] for r in seen + rest]
    assert len(written) > 0
    assert len(ids) == len(set(ids))
    assert set(ids) == {r["id"] for r in originals} | set(written)


def test_cursor_survives_a_server_restart(database_url: str) -> None:
    # Given 1,000 customers and a client half-way through pulling them
    client = make_app(database_url).test_client()
    records = [customer() for _ in range(1000)]
    push(client, "customers", records)
    first = client.get("/api/customers?limit=400", headers=AUTH).get_json()

    # When the server restarts (a new app on the same database) and the client resumes
    restarted = make_app(database_url).test_client()
    rest, _ = pull_all(restarted, "customers", since=first["next_cursor"], limit=400)

    # Then it gets exactly the records it had not seen
    ids = [r["id"] for r in first["records"] + rest]
    assert sorted(ids) == sorted(r["id"] for r in records)


def test_racing_updates_with_the_same_base_version_let_exactly_one_win(database_url: str) -> None:
    # Given one customer at version 1
    app = make_app(database_url)
    record = customer()
    push(app.test_client(), "customers", [record])
    barrier = threading.Barrier(8)
    outcomes: dict[int, dict[str, Any]] = {}

    # When eight threads update it at once, all from version 1
    def update(n: int) -> None:
        client = app.test_client()
        barrier.wait()
        body = {**record, "name": f"writer {n}", "base_version": 1}
        outcomes[n] = client.post("/api/customers", json=body, headers=AUTH).get_json()

    threads = [threading.Thread(target=update, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # Then one is updated, seven are conflicts, and the server holds the winner's write
    winners = [n for n, o in outcomes.items() if o["status"] == "updated"]
    assert len(winners) == 1
    assert sorted(o["status"] for o in outcomes.values()) == ["conflict"] * 7 + ["updated"]
    stored = app.test_client().get(f"/api/customers/{record['id']}", headers=AUTH).get_json()
    assert stored["name"] == f"writer {winners[0]}"
    assert stored["version"] == 2


def test_concurrent_read_modify_write_loses_no_update(database_url: str) -> None:
    # Given one customer whose notes collect tokens
    app = make_app(database_url)
    record = customer(notes="")
    push(app.test_client(), "customers", [record])
    versions: dict[int, list[int]] = {n: [] for n in range(8)}

    # When eight threads each add three tokens, retrying on conflict from the server's record
    def writer(n: int) -> None:
        client = app.test_client()
        current = client.get(f"/api/customers/{record['id']}", headers=AUTH).get_json()
        for k in range(3):
            while True:
                base = current.pop("version")
                body = {**current, "notes": current["notes"] + f"[{n}.{k}]", "base_version": base}
                result = client.post("/api/customers", json=body, headers=AUTH).get_json()
                if result["status"] == "updated":
                    versions[n].append(result["version"])
                    current = {**body, "version": result["version"]}
                    current.pop("base_version")
                    break
                assert result["status"] == "conflict"
                current = result["record"]

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # Then all 24 tokens are there, versions rose by one per update and never repeated
    stored = app.test_client().get(f"/api/customers/{record['id']}", headers=AUTH).get_json()
    assert sorted(stored["notes"].strip("[]").split("][")) == sorted(f"{n}.{k}" for n in range(8) for k in range(3))
    assert stored["version"] == 1 + 24
    all_versions = [v for vs in versions.values() for v in vs]
    assert sorted(all_versions) == list(range(2, 26))
    assert all(vs == sorted(vs) for vs in versions.values())


def test_a_resent_batch_changes_nothing_and_reports_no_conflict(database_url: str) -> None:
    # Given a batch of new records and updates that the server has applied
    client = make_app(database_url).test_client()
    existing = customer(name="Before")
    push(client, "customers", [existing])
    batch = [customer() for _ in range(50)] + [{**existing, "name": "After", "base_version": 1}]
    first = push(client, "customers", batch)
    assert {r["status"] for r in first} == {"created", "updated"}
    before, _ = pull_all(client, "customers")

    # When the same batch is sent again (a retry after a lost answer)
    again = push(client, "customers", batch)

    # Then every record is unchanged, at the version of the first answer, and nothing is added
    assert [r["status"] for r in again] == ["unchanged"] * len(batch)
    assert [r["version"] for r in again] == [r["version"] for r in first]
    after, _ = pull_all(client, "customers")
    assert after == before


def test_a_stale_base_version_is_a_conflict_that_writes_nothing(database_url: str) -> None:
    # Given a customer another device has already updated to version 2
    client = make_app(database_url).test_client()
    record = customer(name="Original")
    push(client, "customers", [record])
    push(client, "customers", [{**record, "name": "Other device", "base_version": 1}])

    # When this device pushes its own edit made from version 1
    response = client.post("/api/customers", json={**record, "phone": "555", "base_version": 1}, headers=AUTH)

    # Then it is a 409 conflict carrying the server's record, which is unchanged
    assert response.status_code == 409
    body = response.get_json()
    assert body["status"] == "conflict"
    assert body["record"]["name"] == "Other device" and body["record"]["version"] == 2
    stored = client.get(f"/api/customers/{record['id']}", headers=AUTH).get_json()
    assert stored["phone"] is None and stored["version"] == 2


def test_deletes_travel_as_tombstones_in_change_order(database_url: str) -> None:
    # Given two customers, one then deleted
    client = make_app(database_url).test_client()
    keep, gone = customer(), customer()
    push(client, "customers", [keep, gone])
    _, cursor = pull_all(client, "customers")
    push(client, "customers", [{**gone, "deleted_at": "2026-11-25T10:00:00Z", "base_version": 1}])

    # When a client pulls from its cursor
    changes, _ = pull_all(client, "customers", since=cursor)

    # Then the delete comes as a tombstone with a raised version
    assert [(r["id"], r["deleted_at"], r["version"]) for r in changes] == [(gone["id"], "2026-11-25T10:00:00.000Z", 2)]


def test_money_and_percentages_round_trip_exactly(database_url: str) -> None:
    # Given a quote whose amounts a binary float cannot hold exactly
    client = make_app(database_url).test_client()
    owner = customer()
    push(client, "customers", [owner])
    amounts = {"total_amount": "98765432.10", "discount_percent": "12.345", "tax_percent": "0.1"}
    quote = {"id": new_id(), "customer_id": owner["id"], **amounts}

    # When it is pushed and pulled back
    push(client, "quotes", [quote])
    (pulled,), _ = pull_all(client, "quotes")

    # Then every value is the same decimal, as a string in the column's scale
    assert pulled["total_amount"] == "98765432.10"
    assert pulled["discount_percent"] == "12.345"
    assert pulled["tax_percent"] == "0.100"


def test_updated_since_and_count_follow_the_server_change_order(database_url: str) -> None:
    # Given 30 customers
    client = make_app(database_url).test_client()
    push(client, "customers", [customer() for _ in range(30)])

    # When a client asks with count=true for pages of 10, and with the original updatedSince form
    first = client.get("/api/customers?limit=10&count=true", headers=AUTH).get_json()
    second = client.get(f"/api/customers?limit=10&count=true&since={first['next_cursor']}", headers=AUTH).get_json()
    legacy = client.get("/api/customers?updatedSince=2000-01-01T00:00:00Z&limit=100", headers=AUTH).get_json()
    future = client.get("/api/customers?updatedSince=2999-01-01T00:00:00Z", headers=AUTH).get_json()

    # Then remaining counts the changes after each cursor and updatedSince filters by change time
    assert (first["remaining"], second["remaining"]) == (30, 20)
    assert first["has_more"] and len(first["records"]) == 10
    assert len(legacy["records"]) == 30 and not legacy["has_more"]
    assert future["records"] == [] and not future["has_more"]


def test_quotes_without_a_number_get_one_and_blocks_never_overlap(database_url: str) -> None:
    # Given a customer and two devices that each reserved a block of quote numbers
    client = make_app(database_url).test_client()
    owner = customer()
    push(client, "customers", [owner])
    blocks = [
        client.post("/api/number-blocks", json={"entity": "quotes", "device_id": d, "size": 5}, headers=AUTH).get_json()
        for d in ("laptop", "tablet")
    ]

    # When each device creates quotes offline from its block, and one quote arrives with no number
    quotes = [
        {"id": new_id(), "customer_id": owner["id"], "quote_number": f"Q-{n:06d}"}
        for block in blocks
        for n in range(block["first"], block["last"] + 1)
    ]
    results = push(client, "quotes", [*quotes, {"id": new_id(), "customer_id": owner["id"]}])

    # Then every quote is created with a distinct number and the unnumbered one got a fresh one
    assert all(r["status"] == "created" for r in results)
    stored, _ = pull_all(client, "quotes")
    numbers = [r["quote_number"] for r in stored]
    assert len(set(numbers)) == len(numbers) == 11
    assert results[-1]["record"]["quote_number"] not in {q["quote_number"] for q in quotes}


def test_a_number_taken_on_create_is_renumbered_and_reported(database_url: str) -> None:
    # Given two devices that made up the same order number offline
    client = make_app(database_url).test_client()
    owner = customer()
    push(client, "customers", [owner])
    first = {"id": new_id(), "customer_id": owner["id"], "order_number": "O-2026-1"}
    second = {"id": new_id(), "customer_id": owner["id"], "order_number": "O-2026-1"}
    push(client, "orders", [first])

    # When the second device pushes its order
    (result,) = push(client, "orders", [second])

    # Then it is created under a new number, and the answer says so; both orders exist
    assert result["status"] == "created"
    assert "renumbered" in result["reason"]
    assert result["record"]["order_number"] != "O-2026-1"
    stored, _ = pull_all(client, "orders")
    assert sorted(r["id"] for r in stored) == sorted([first["id"], second["id"]])


def test_a_number_the_server_hands_out_is_never_one_a_live_record_already_holds(database_url: str) -> None:
    # Given live quotes whose numbers a client chose in the server's own form
    client = make_app(database_url).test_client()
    owner = customer()
    push(client, "customers", [owner])
    chosen = [{"id": new_id(), "customer_id": owner["id"], "quote_number": f"Q-00000{n}"} for n in (1, 2)]
    push(client, "quotes", chosen)

    # When quotes without a number arrive, one of them with a number another quote holds
    results = push(client, "quotes", [{"id": new_id(), "customer_id": owner["id"]},
                                      {"id": new_id(), "customer_id": owner["id"], "quote_number": "Q-000001"}])

    # Then each gets a number no live quote holds
    assert [r["status"] for r in results] == ["created", "created"]
    stored, _ = pull_all(client, "quotes")
    numbers = [r["quote_number"] for r in stored]
    assert len(numbers) == len(set(numbers)) == 4
    assert [r["record"]["quote_number"] for r in results] == ["Q-000003", "Q-000004"]


def test_a_number_taken_on_update_is_rejected_and_a_deleted_record_frees_its_number(database_url: str) -> None:
    # Given two live quotes
    client = make_app(database_url).test_client()
    owner = customer()
    push(client, "customers", [owner])
    a = {"id": new_id(), "customer_id": owner["id"], "quote_number": "Q-A"}
    b = {"id": new_id(), "customer_id": owner["id"], "quote_number": "Q-B"}
    push(client, "quotes", [a, b])

    # When b is renamed to a's number, then a is deleted and b tries again
    (clash,) = push(client, "quotes", [{**b, "quote_number": "Q-A", "base_version": 1}])
    push(client, "quotes", [{**a, "deleted_at": "2026-11-25T00:00:00Z", "base_version": 1}])
    (retry,) = push(client, "quotes", [{**b, "quote_number": "Q-A", "base_version": 1}])

    # Then the first attempt is rejected with a reason, the second succeeds
    assert clash["status"] == "rejected" and "Q-A" in clash["reason"]
    assert retry["status"] == "updated"


def test_children_that_reference_missing_parents_are_rejected(database_url: str) -> None:
    # Given no customers and no quotes on the server
    client = make_app(database_url).test_client()

    # When a quote and an order that reference missing records are pushed
    (quote,) = push(client, "quotes", [{"id": new_id(), "customer_id": new_id()}])
    (order,) = push(client, "orders", [{"id": new_id(), "quote_id": new_id()}])

    # Then both are rejected naming the reference, and nothing is stored
    assert quote["status"] == "rejected" and "customer_id" in quote["reason"]
    assert order["status"] == "rejected" and "quote_id" in order["reason"]
    assert pull_all(client, "quotes")[0] == [] and pull_all(client, "orders")[0] == []


def test_migrations_create_exactly_the_schema_the_code_uses(database_url: str) -> None:
    # Given a database migrated by the app's start-up
    make_app(database_url)

    # When Alembic compares it with the tables the code declares
    engine = create_engine(database_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
        revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    engine.dispose()

    # Then there is no difference and the revision is recorded
    assert diff == []
    assert revision == "0003"


@pytest.mark.postgres
def test_health_answers_503_when_the_database_is_unreachable(tmp_path) -> None:
    # Given a server whose PostgreSQL database then disappears
    from tests.conftest import POSTGRES_ADMIN_URL, _fresh_database

    databases = _fresh_database(POSTGRES_ADMIN_URL, "PostgreSQL")
    url = next(databases)
    app = make_app(url)
    client = app.test_client()
    assert client.get("/api/health").status_code == 200
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE {url.rsplit('/', 1)[1]} WITH (FORCE)"))
    admin.dispose()

    # When the health endpoint is asked
    response = client.get("/api/health")

    # Then it answers 503 in the documented shape
    assert response.status_code == 503
    assert response.get_json()["status"] == "error"
    next(databases, None)
