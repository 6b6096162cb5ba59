"""`craftsync server adopt` puts CraftSync in front of a database a business already has, on
SQLite, PostgreSQL and MariaDB: every row and column kept, each unfit table or column one
line that names it, a dry run that changes nothing.

The databases are made here with plain SQL through each driver, as an accounting program
would have made them: other table and column names, integer keys the database assigns,
money as NUMERIC, dates as DATE, times as TIMESTAMP, columns the contract does not know.
Every check reads the database raw, through the driver.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from craftsync.shell.cli import main
from tests.support.api import make_app
from tests.support.device import Device
from tests.support.process import CRAFTSYNC, ROOT, clean_env

#: How many customers the shop holds before adoption.
CLIENTS = 100_000

#: The mapping file of the shop's schema: the documented example itself.
SHOP_MAPPING = (ROOT / "docs" / "adopt-example.toml").read_text(encoding="utf-8")


def edited(*edits: tuple[str, str]) -> str:
    """The shop's mapping file with each (line pattern, replacement) applied once."""
    text = SHOP_MAPPING
    for pattern, replacement in edits:
        text, count = re.subn(pattern, replacement, text, count=1, flags=re.MULTILINE)
        assert count == 1, pattern
    return text


# -- the shop's database, made with plain SQL ------------------------------------------------------


def _dialect(url: str) -> str:
    name = make_url(url).get_backend_name()
    return "mysql" if name in ("mysql", "mariadb") else name


#: Per backend: an integer key the database assigns, a time column, and the marker of a
#: driver parameter.
_AUTO = {"sqlite": "INTEGER PRIMARY KEY AUTOINCREMENT", "postgresql": "SERIAL PRIMARY KEY",
         "mysql": "INT AUTO_INCREMENT PRIMARY KEY"}
_TIME = {"sqlite": "TIMESTAMP", "postgresql": "TIMESTAMP", "mysql": "DATETIME"}
_PARAM = {"sqlite": "?", "postgresql": "%s", "mysql": "%s"}


def shop_tables(dialect: str, **change: str) -> list[str]:
    """The CREATE TABLE statements of the shop; ``change`` replaces a table's (by name)."""
    auto, ts = _AUTO[dialect], _TIME[dialect]
    tables = {
        "clients": f"""CREATE TABLE clients (
            client_no {auto}, full_name VARCHAR(200) NOT NULL, company VARCHAR(200), email_address VARCHAR(254),
            phone VARCHAR(50), street VARCHAR(500), city VARCHAR(100), region VARCHAR(100), postcode VARCHAR(20),
            country VARCHAR(100), loyalty_tier VARCHAR(20) NOT NULL DEFAULT 'bronze',
            credit_limit NUMERIC(12, 2) NOT NULL, opened_on DATE, created {ts}, modified {ts})""",
        "offers": f"""CREATE TABLE offers (
            offer_id {auto}, offer_no VARCHAR(40) NOT NULL, client_no INTEGER, title VARCHAR(200),
            status VARCHAR(40), amount NUMERIC(12, 2), discount NUMERIC(6, 3), tax_rate NUMERIC(6, 3),
            remarks TEXT, valid_until DATE, created_by VARCHAR(100), created {ts}, modified {ts},
            cancelled_at {ts} NULL, internal_ref VARCHAR(30), printed SMALLINT NOT NULL DEFAULT 0,
            FOREIGN KEY (client_no) REFERENCES clients (client_no))""",
        "jobs": f"""CREATE TABLE jobs (
            job_id {auto}, job_no VARCHAR(40) NOT NULL, offer_id INTEGER, client_no INTEGER,
            status VARCHAR(40), order_date DATE, delivery_date DATE, amount NUMERIC(12, 2),
            payment_status VARCHAR(40), notes TEXT, created_at {ts}, updated_at {ts},
            workshop VARCHAR(40) NOT NULL,
            FOREIGN KEY (offer_id) REFERENCES offers (offer_id), FOREIGN KEY (client_no) REFERENCES clients (client_no))""",
    }
    tables.update(change)
    return [statement for statement in tables.values() if statement]


@contextmanager
def driver(url: str) -> Iterator[Any]:
    """A connection of the database's own driver (sqlite3, psycopg, pymysql), as any program
    other than CraftSync has; closed at the end, its work committed."""
    engine = create_engine(url, connect_args={"timeout": 60} if _dialect(url) == "sqlite" else {})
    conn = engine.raw_connection()
    try:
        yield conn
        conn.commit()
    finally:
        conn.close()
        engine.dispose()


def execute(url: str, *statements: str) -> None:
    with driver(url) as conn:
        cursor = conn.cursor()
        for statement in statements:
            cursor.execute(statement)


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    with driver(url) as conn:
        cursor = conn.cursor()
        cursor.execute(sql)
        return [tuple(row) for row in cursor.fetchall()]


def insert_rows(url: str, table: str, columns: list[str], rows: list[tuple[Any, ...]], *, chunk: int = 1000) -> None:
    """Rows in multi-row INSERTs of ``chunk`` rows, as a bulk load does."""
    mark = _PARAM[_dialect(url)]
    one = "(" + ", ".join([mark] * len(columns)) + ")"
    with driver(url) as conn:
        cursor = conn.cursor()
        for start in range(0, len(rows), chunk):
            part = rows[start : start + chunk]
            cursor.execute(f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join([one] * len(part))}",
                           [value for row in part for value in row])


CLIENT_COLUMNS = ["full_name", "company", "email_address", "phone", "street", "city", "region", "postcode",
                  "country", "loyalty_tier", "credit_limit", "opened_on", "created", "modified"]


def make_shop(url: str, *, clients: int = CLIENTS) -> None:
    """The shop's tables with ``clients`` customers, some quotes (numbered by the shop's own
    program, one in the contract's form) and an order."""
    execute(url, *shop_tables(_dialect(url)))
    insert_rows(url, "clients", CLIENT_COLUMNS, [
        (f"Client {i}", f"Firm {i}" if i % 7 == 0 else None, f"c{i}@shop.example", None, f"{i} Mill Lane",
         "Leeds", "West Yorkshire", f"LS{i % 30} {i % 9}AB", "UK", ("gold", "silver", "bronze")[i % 3],
         f"{i % 5000}.50", f"20{10 + i % 15}-0{1 + i % 9}-1{i % 10}", f"2025-01-0{1 + i % 9} 10:11:12",
         "2025-06-30 08:00:00")
        for i in range(1, clients + 1)
    ])
    insert_rows(url, "offers", ["offer_no", "client_no", "title", "status", "amount", "discount", "valid_until",
                                "created", "internal_ref", "printed"], [
        ("Q-000120", 1, "Oak table", "sent", "1200.00", "5.000", "2026-12-31", "2025-02-01 09:00:00", "A-1", 1),
        ("Q-000007", 2, "Chairs", "accepted", "300.10", None, None, "2025-02-02 09:00:00", "A-2", 0),
        ("WEB-981", 3, "Web shop order", "draft", "19.99", None, None, "2025-02-03 09:00:00", None, 0),
    ])
    insert_rows(url, "jobs", ["job_no", "offer_id", "client_no", "status", "order_date", "amount", "workshop"], [
        ("O-000042", 2, 2, "confirmed", "2025-03-01", "300.10", "east"),
    ])


def write_mapping(tmp_path: Path, text: str = SHOP_MAPPING) -> Path:
    path = tmp_path / "shop.toml"
    path.write_text(text, encoding="utf-8")
    return path


# -- raw snapshots -----------------------------------------------------------------------------------


def schema_of(url: str) -> list[tuple[Any, ...]]:
    """Every table, column, index and trigger the database reports, raw."""
    dialect = _dialect(url)
    if dialect == "sqlite":
        return query(url, "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name")
    if dialect == "postgresql":
        return (query(url, "SELECT table_name, column_name, data_type, is_nullable, column_default FROM "
                           "information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2")
                + query(url, "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
                             "ORDER BY 1, 2")
                + query(url, "SELECT tgname, tgrelid::regclass::text FROM pg_trigger WHERE NOT tgisinternal "
                             "ORDER BY 1")
                + query(url, "SELECT proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                             "WHERE n.nspname = 'public' ORDER BY 1"))
    return (query(url, "SELECT table_name, column_name, column_type, is_nullable, column_default FROM "
                       "information_schema.columns WHERE table_schema = DATABASE() ORDER BY 1, 2")
            + query(url, "SELECT table_name, index_name, column_name FROM information_schema.statistics "
                         "WHERE table_schema = DATABASE() ORDER BY 1, 2, 3")
            + query(url, "SELECT trigger_name, event_object_table FROM information_schema.triggers "
                         "WHERE trigger_schema = DATABASE() ORDER BY 1"))


def tables_of(url: str) -> list[str]:
    dialect = _dialect(url)
    if dialect == "sqlite":
        sql = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
    elif dialect == "postgresql":
        sql = "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
    else:
        sql = "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() ORDER BY 1"
    return [row[0] for row in query(url, sql)]


def snapshot(url: str) -> tuple[list[tuple[Any, ...]], dict[str, list[tuple[Any, ...]]]]:
    """The schema and every row of every table, raw, in a stable order."""
    return schema_of(url), {table: sorted(query(url, f"SELECT * FROM {table}"), key=repr) for table in tables_of(url)}


def rows_by_key(url: str, table: str, key: str) -> dict[Any, tuple[Any, ...]]:
    return {row[0]: row for row in query(url, f"SELECT {key}, t.* FROM {table} t")}


# -- running the command ---------------------------------------------------------------------------


def adopt_process(url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`craftsync server adopt ARGS` through the console script, on ``url``."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return subprocess.run([*CRAFTSYNC, "server", "adopt", *args], env=clean_env(home, DATABASE_URL=url),
                          cwd=tmp_path, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)


def adopt_here(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
               *args: str) -> tuple[int, str, str]:
    """The same command through the CLI's entry point in this process (much faster than a
    process per case); the exit code, stdout and stderr."""
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("CRAFTSYNC_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    code = main(["server", "adopt", *args])
    out, err = capsys.readouterr()
    return code, out, err


def sync_cleanly(device: Device, *entities: str) -> None:
    """Sync ``entities`` (none: all); every run completes, nothing rejected."""
    runs = [device.sync(entity) for entity in entities] if entities else device.sync_all()
    assert all(r.status == "completed" and not r.rejected for r in runs), [(r.entity, r.status, r.error) for r in runs]


def device_for(tmp_path: Path, url: str) -> Device:
    """A new desktop syncing in-process with a reference server app on ``url``."""
    return Device.in_process(tmp_path / "desk.db", make_app(url))


# -- the guarantees --------------------------------------------------------------------------------


@pytest.mark.slow
def test_an_adopted_shop_database_keeps_every_row_and_column_and_syncs_both_ways(
        database_url: str, tmp_path: Path, record_property: Any) -> None:
    # Given the shop's database: 100,000 clients, quotes numbered by the shop's own program,
    # an order, and columns the contract does not know
    make_shop(database_url)
    before = {table: rows_by_key(database_url, table, key)
              for table, key in (("clients", "client_no"), ("offers", "offer_id"), ("jobs", "job_id"))}

    # When it is adopted with a mapping file, through the console script
    started = time.perf_counter()
    done = adopt_process(database_url, tmp_path, "--config", str(write_mapping(tmp_path)))
    wall = time.perf_counter() - started

    # Then it says what it did and how long the adoption took: seconds for 100,000 rows
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert f"fill craftsync_customers from the {CLIENTS} rows of clients" in done.stdout
    took, checks, changes = map(float, re.search(  # type: ignore[union-attr]
        r"Adopted in ([0-9.]+) s \(reading and checking ([0-9.]+) s, the changes ([0-9.]+) s\)", done.stdout).groups())
    print(f"\n{_dialect(database_url)}: adopted {CLIENTS} clients in {took:.1f} s (reading and checking {checks:.1f} s, "
          f"the changes {changes:.1f} s; {wall:.1f} s with the process)")
    record_property(f"adopt_seconds_{_dialect(database_url)}", took)
    assert took < 30

    # And a new device receives every row through its real sync
    device = device_for(tmp_path, database_url)
    try:
        sync_cleanly(device)
        central = {f"{key:032d}": (row[2], row[9], row[4]) for key, row in before["clients"].items()}
        local = {row["id"]: (row["name"], row["zip"], row["email"])
                 for row in device.sql("SELECT id, name, zip, email FROM customers")}
        assert local == central
        quotes = {row["id"]: (row["quote_number"], row["customer_id"], row["total_amount"])
                  for row in device.sql("SELECT id, quote_number, customer_id, total_amount FROM quotes")}
        assert quotes == {f"{1:032d}": ("Q-000120", f"{1:032d}", "1200.00"),
                          f"{2:032d}": ("Q-000007", f"{2:032d}", "300.10"),
                          f"{3:032d}": ("WEB-981", f"{3:032d}", "19.99")}
        assert [tuple(r) for r in device.sql("SELECT order_number, quote_id, customer_id FROM orders")] == [
            ("O-000042", f"{2:032d}", f"{2:032d}")]

        # When a customer and a quote made offline on the device are synced
        device.sql("INSERT INTO customers (name, zip, email) VALUES ('Offline Ann', 'YO1 7HH', 'ann@craft.example')")
        (ann,) = [row["id"] for row in device.sql("SELECT id FROM customers WHERE name = 'Offline Ann'")]
        device.sql("INSERT INTO quotes (customer_id, project_name, total_amount, valid_until) "
                   "VALUES (?, 'Offline bench', '450.00', '2027-01-31')", ann)
        sync_cleanly(device)

        # Then they are rows of the shop's tables with integer keys; the quote's client_no is
        # Ann's key; the NOT NULL column without a default took the mapping file's value and
        # the one with a default its default
        ((client_no, name, zip_code, tier, limit),) = query(
            database_url, "SELECT client_no, full_name, postcode, loyalty_tier, credit_limit FROM clients "
                          "WHERE full_name = 'Offline Ann'")
        assert isinstance(client_no, int) and client_no > CLIENTS
        assert (name, zip_code, tier, Decimal(str(limit))) == ("Offline Ann", "YO1 7HH", "bronze", Decimal(250))
        ((offer_id, offer_no, offer_client, amount, printed),) = query(
            database_url, "SELECT offer_id, offer_no, client_no, amount, printed FROM offers WHERE title = 'Offline bench'")
        assert isinstance(offer_id, int) and offer_client == client_no
        assert (Decimal(str(amount)), printed) == (Decimal("450.00"), 0)
        # its number comes after the highest the shop's program gave in the contract's form
        assert re.fullmatch(r"Q-[0-9]{6}", offer_no) and int(offer_no[2:]) > 120
        assert query(database_url, f"SELECT id FROM craftsync_customers WHERE row_key = {client_no}") == [(ann,)]

        # And the server's start-up migration made no table of its own: the shop's and CraftSync's
        assert tables_of(database_url) == sorted([
            "alembic_version", "clients", "craftsync_counters", "craftsync_customers", "craftsync_customers_log",
            "craftsync_mapping", "craftsync_number_blocks", "craftsync_orders", "craftsync_orders_log",
            "craftsync_quotes", "craftsync_quotes_log", "jobs", "offers"])

        # And the existing rows, their extra columns included, are exactly as they were
        for table, key in (("clients", "client_no"), ("offers", "offer_id"), ("jobs", "job_id")):
            after = rows_by_key(database_url, table, key)
            assert {k: after[k] for k in before[table]} == before[table], table

        # When another program changes a postcode with plain SQL
        execute(database_url, "UPDATE clients SET postcode = 'ZZ9 9ZZ' WHERE client_no = 17")

        # Then the change reaches the device
        sync_cleanly(device, "customers")
        assert [tuple(r) for r in device.sql("SELECT zip FROM customers WHERE id = ?", f"{17:032d}")] == [("ZZ9 9ZZ",)]
    finally:
        device.close()


def test_a_dry_run_lists_every_change_and_makes_none(database_url: str, tmp_path: Path) -> None:
    # Given the shop's database, one client's e-mail address not one a device may send
    make_shop(database_url, clients=500)
    execute(database_url, "UPDATE clients SET email_address = 'ann at home' WHERE client_no = 3")
    before = snapshot(database_url)

    def key_trigger(entity: str) -> str:  # SQLite has no statement triggers: a key change has its own
        return f"craftsync_{entity}_key, " if database_url.startswith("sqlite") else ""

    # When a dry run of its adoption runs
    done = adopt_process(database_url, tmp_path, "--config", str(write_mapping(tmp_path)), "--dry-run")

    # Then it lists every change it would make
    assert done.returncode == 0, done.stderr
    for change in (
        "create table craftsync_counters", "create table craftsync_number_blocks", "create table craftsync_mapping",
        "create table craftsync_customers", "create table craftsync_quotes", "create table craftsync_orders",
        *(f"install triggers craftsync_{entity}_ins, craftsync_{entity}_upd, {key_trigger(entity)}craftsync_{entity}_del "
          f"on {table}, with their table craftsync_{entity}_log"
          for entity, table in (("customers", "clients"), ("quotes", "offers"), ("orders", "jobs"))),
        "fill craftsync_customers from the 500 rows of clients", "fill craftsync_quotes from the 3 rows of offers",
        "fill craftsync_orders from the 1 rows of jobs", "set counter customers to 500", "set counter quotes to 3",
        "set counter orders to 1", "set counter quotes.number to 120", "set counter orders.number to 42",
        "stamp alembic_version",
    ):
        assert f"- {change}" in done.stdout, change
    # and what the maps mean, and the value a device could not send back
    assert "customers.deleted_at: no column, so a device's delete removes the row" in done.stdout
    assert "customers.notes: no column" in done.stdout
    assert ("warning: clients.email_address: 1 row holds a value that customers.email refuses (where client_no "
            "is 3: must be an e-mail address") in done.stdout

    # And the schema and every row are exactly as they were
    assert snapshot(database_url) == before


# Each unfit database: what is changed in the shop's tables (or mapping file), and what the
# one line says (the table and column named).
_SHOP_CASES: dict[str, tuple[dict[str, str], str, str]] = {
    "a missing table": ({"jobs": ""}, SHOP_MAPPING, r"^jobs: there is no table of this name"),
    "a table without a primary key": (
        {"clients": "CREATE TABLE clients (client_no INTEGER NOT NULL, full_name VARCHAR(200) NOT NULL, "
                    "postcode VARCHAR(20), credit_limit NUMERIC(12, 2) NOT NULL)"},
        edited((r'^key = "client_no"\n', "")), r"^clients: the table has no primary key"),
    "a primary key of two columns": (
        {"clients": "CREATE TABLE clients (branch INTEGER NOT NULL, client_no INTEGER NOT NULL, "
                    "full_name VARCHAR(200) NOT NULL, PRIMARY KEY (branch, client_no))"},
        edited((r'^key = "client_no"\n', "")), r"^clients: the primary key has 2 columns \(branch, client_no\)"),
    "a key that is neither whole numbers nor 32 characters": (
        {"clients": "CREATE TABLE clients (client_no VARCHAR(10) PRIMARY KEY, full_name VARCHAR(200) NOT NULL)"},
        SHOP_MAPPING, r"^clients\.client_no: the key column is of type VARCHAR\(10\); CraftSync needs a key of whole numbers"),
    "a key column that is not unique": (
        {}, edited((r'^key = "client_no"$', 'key = "postcode"')),
        r"^clients\.postcode: this column is neither the primary key nor unique and always filled"),
    "another program's alembic_version table": (
        {"alembic_version": "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)",
         "alembic_version row": "INSERT INTO alembic_version VALUES ('3f2a9c1d7e4b')"},
        SHOP_MAPPING, r"^alembic_version: this table belongs to another program"),
    "a table of CraftSync's name": (
        {"craftsync_counters": "CREATE TABLE craftsync_counters (name VARCHAR(40) PRIMARY KEY)"},
        SHOP_MAPPING, r"^craftsync_counters: a table of this name exists already"),
    "a required field without a column": (
        {}, edited((r"^name = .*\n", "")), r"^clients: there is no column name for customers\.name"),
    "a required field mapped to false": (
        {}, edited((r"^quote_number = .*$", "quote_number = false")),
        r"offers: quotes\.quote_number cannot be left out"),
    "a mapped column that does not exist": (
        {}, edited((r"^zip = .*$", 'zip = "post_code"')), r"^clients\.post_code: there is no such column"),
    "a text field in a whole-number column": (
        {}, edited((r"^project_name = .*$", 'project_name = "printed"')),
        r"^offers\.printed: a column of type SMALLINT(\(6\))? cannot hold quotes\.project_name, which is text$"),
    "money in a DATE column": (
        {}, edited((r'^total_amount = "amount"$', 'total_amount = "valid_until"')),
        r"^offers\.valid_until: a column of type DATE cannot hold quotes\.total_amount, which is an amount of money$"),
    "a quote number in a whole-number column": (
        {}, edited((r"^quote_number = .*$", 'quote_number = "printed"')),
        r"^offers\.printed: a column of type SMALLINT(\(6\))? cannot hold quotes\.quote_number, which is text "
        r"\(a text column is needed\)$"),
    "a NOT NULL column without a default that nothing fills": (
        {}, edited((r'^\[orders\.defaults\]\nworkshop = "main"\n', "")),
        r"^jobs\.workshop: the column must always hold a value and has no default"),
    "a reference column that cannot hold the referenced key": (
        {"offers": "CREATE TABLE offers (offer_id {auto}, offer_no VARCHAR(40) NOT NULL, client_no VARCHAR(32), "
                   "title VARCHAR(200), status VARCHAR(40), amount NUMERIC(12, 2), discount NUMERIC(6, 3), "
                   "tax_rate NUMERIC(6, 3), remarks TEXT, valid_until DATE, created_by VARCHAR(100), "
                   "created {ts}, modified {ts}, cancelled_at {ts} NULL)"},
        SHOP_MAPPING, r"^offers\.client_no: quotes\.customer_id refers to clients, whose key client_no is "
                      r"of type INTEGER(\(11\))?, so it needs a whole-number column, not one of type VARCHAR\(32\)$"),
}


@pytest.mark.parametrize("case", list(_SHOP_CASES))
def test_an_unfit_database_is_refused_with_one_line_naming_table_and_column_and_left_unchanged(
        case: str, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Given the shop's database with one thing wrong for adoption
    tables, mapping, line = _SHOP_CASES[case]
    dialect = _dialect(database_url)
    if tables:
        tables = {name: sql.format(auto=_AUTO[dialect], ts=_TIME[dialect]) for name, sql in tables.items()}
    if "clients" in tables:  # the others refer to the shop's clients table
        tables.update(offers="", jobs="")
    execute(database_url, *shop_tables(dialect, **tables))
    before = snapshot(database_url)

    # When it is adopted
    code, out, err = adopt_here(database_url, tmp_path, monkeypatch, capsys, "--config", str(write_mapping(tmp_path, mapping)))

    # Then it is refused, with one plain line that says what is wrong where, no traceback
    assert code == 1, out
    lines = err.splitlines()
    assert all(problem.startswith("craftsync: ") for problem in lines), err
    assert any(re.search(line, problem.removeprefix("craftsync: ")) for problem in lines), err
    assert "Traceback" not in err and "sqlalchemy" not in err.lower()

    # And nothing is changed
    assert snapshot(database_url) == before


# -- a database with the contract's own names ------------------------------------------------------


def contract_tables(dialect: str, *, leave_out: str = "") -> list[str]:
    """Tables of the contract's names and fields, keyed by 32-character ids, without
    ``created_at``/``updated_at``/``deleted_at`` but in quotes; ``leave_out`` drops one
    customers column."""
    ts = _TIME[dialect]
    customers = [c for c in ("company VARCHAR(200)", "email VARCHAR(254)", "phone VARCHAR(50)",
                             "address VARCHAR(500)", "city VARCHAR(100)", "state VARCHAR(100)", "zip VARCHAR(20)",
                             "country VARCHAR(100)", "notes TEXT") if not c.startswith(leave_out + " ")]
    return [
        f"CREATE TABLE customers (id CHAR(32) PRIMARY KEY, name VARCHAR(200) NOT NULL, {', '.join(customers)})",
        "CREATE TABLE quotes (id CHAR(32) PRIMARY KEY, quote_number VARCHAR(40) NOT NULL, customer_id CHAR(32), "
        "project_name VARCHAR(200), status VARCHAR(40), total_amount NUMERIC(12, 2), discount_percent NUMERIC(6, 3), "
        f"tax_percent NUMERIC(6, 3), notes TEXT, valid_until DATE, created_by VARCHAR(100), created_at {ts} NULL, "
        f"updated_at {ts} NULL, deleted_at {ts} NULL, FOREIGN KEY (customer_id) REFERENCES customers (id))",
        "CREATE TABLE orders (id CHAR(32) PRIMARY KEY, order_number VARCHAR(40) NOT NULL, quote_id CHAR(32), "
        "customer_id CHAR(32), status VARCHAR(40), order_date DATE, delivery_date DATE, total_amount NUMERIC(12, 2), "
        "payment_status VARCHAR(40), notes TEXT, FOREIGN KEY (quote_id) REFERENCES quotes (id), "
        "FOREIGN KEY (customer_id) REFERENCES customers (id))",
    ]


ANN, BEN = "a" * 32, "0123456789abcdef" * 2


def test_a_database_with_the_contracts_names_is_adopted_without_a_mapping_file(
        database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # Given tables of the contract's own names, keyed by ids, with no times in customers
    execute(database_url, *contract_tables(_dialect(database_url)))
    insert_rows(database_url, "customers", ["id", "name", "zip"], [(ANN, "Ann", "LS1"), (BEN, "Ben", "LS2")])
    insert_rows(database_url, "quotes", ["id", "quote_number", "customer_id", "total_amount"],
                [("b" * 32, "Q-000005", ANN, "10.00")])

    # When it is adopted without a mapping file
    code, out, err = adopt_here(database_url, tmp_path, monkeypatch, capsys)

    # Then it is, and says what the missing times mean
    assert (code, err) == (0, ""), err
    assert "customers.deleted_at: no column, so a device's delete removes the row (DELETE)" in out
    assert "customers.created_at: no column; the server stores none, devices keep theirs" in out
    assert "- set counter quotes.number to 5" in out

    # And a device receives the rows under their own ids
    device = device_for(tmp_path, database_url)
    try:
        sync_cleanly(device)
        assert {row["id"]: row["name"] for row in device.sql("SELECT id, name FROM customers")} == {
            ANN: "Ann", BEN: "Ben"}
        assert [tuple(r) for r in device.sql("SELECT id, customer_id FROM quotes")] == [("b" * 32, ANN)]

        # When the device makes a customer, deletes Ben and deletes the quote, and syncs
        device.sql("INSERT INTO customers (name) VALUES ('Cleo')")
        ((cleo,),) = [tuple(r) for r in device.sql("SELECT id FROM customers WHERE name = 'Cleo'")]
        device.sql("DELETE FROM customers WHERE id = ?", BEN)
        device.sql("DELETE FROM quotes WHERE id = ?", "b" * 32)
        sync_cleanly(device)

        # Then Cleo's row has the device's id as its key, Ben's row is gone (customers have no
        # deleted_at column) and the quote is marked deleted (quotes have one)
        assert query(database_url, "SELECT id, name FROM customers ORDER BY name") == [(ANN, "Ann"), (cleo, "Cleo")]
        ((deleted_at,),) = query(database_url, "SELECT deleted_at FROM quotes")
        assert deleted_at is not None
    finally:
        device.close()

    # When it is adopted again
    before = snapshot(database_url)
    code, out, err = adopt_here(database_url, tmp_path, monkeypatch, capsys)

    # Then it says so, and changes nothing
    assert (code, err) == (0, "")
    assert "adopted already" in out
    assert snapshot(database_url) == before


def test_without_a_mapping_file_every_field_but_the_times_needs_its_column(
        database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # Given tables of the contract's names, but customers without a company column
    execute(database_url, *contract_tables(_dialect(database_url), leave_out="company"))
    before = snapshot(database_url)

    # When it is adopted without a mapping file
    code, out, err = adopt_here(database_url, tmp_path, monkeypatch, capsys)

    # Then the one line names the table and the field, and nothing is changed
    assert code == 1
    assert err.splitlines() == [
        'craftsync: customers: there is no column company for customers.company; name its column in the mapping '
        'file ([customers.columns] company = "..."), or set company = false to keep it on the devices only',
        "craftsync: nothing was changed (1 problem above)",
    ]
    assert snapshot(database_url) == before


# -- a change the database refuses half-way ----------------------------------------------------------


@contextmanager
def user_without_trigger_rights(url: str) -> Iterator[str]:
    """A database user who may create tables but not triggers; the URL that logs in as it."""
    name, password = f"adopter_{uuid.uuid4().hex[:10]}", "adopter-password"
    database = make_url(url).database
    if _dialect(url) == "postgresql":
        execute(url, f"CREATE ROLE {name} LOGIN PASSWORD '{password}'", f"GRANT USAGE, CREATE ON SCHEMA public TO {name}",
                f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {name}")
        drop = [f"DROP OWNED BY {name}", f"DROP ROLE {name}"]
    else:
        grants = "SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, INDEX, ALTER, REFERENCES"
        execute(url, *(statement for host in ("%", "localhost") for statement in (
            f"CREATE USER '{name}'@'{host}' IDENTIFIED BY '{password}'",
            f"GRANT {grants} ON {database}.* TO '{name}'@'{host}'")))
        drop = [f"DROP USER '{name}'@'{host}'" for host in ("%", "localhost")]
    try:
        yield make_url(url).set(username=name, password=password).render_as_string(hide_password=False)
    finally:
        execute(url, *drop)


@pytest.mark.parametrize("database_url", ["postgresql", "mariadb"], indirect=True)
def test_a_change_the_database_refuses_half_way_leaves_nothing_behind(
        database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # Given the shop's database, and a user who may create tables there but not triggers (on
    # MariaDB each CREATE TABLE commits on its own, before the triggers fail)
    make_shop(database_url, clients=50)
    before = snapshot(database_url)
    with user_without_trigger_rights(database_url) as url:
        # When that user adopts it
        code, out, err = adopt_here(url, tmp_path, monkeypatch, capsys, "--config", str(write_mapping(tmp_path)))

    # Then it fails at the triggers, in one line that says so
    assert code == 1
    first, last = err.splitlines()
    assert first.startswith("craftsync: the database refused to install triggers craftsync_customers_ins"), err
    assert last == "craftsync: nothing was changed (1 problem above)"

    # And the tables it had made are gone again: the database is as it was
    assert snapshot(database_url) == before


def test_a_value_the_server_could_not_read_is_refused_with_its_row(
        sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # Given the shop's SQLite file, where the shop's program wrote a date as 31/12/2026
    make_shop(sqlite_url, clients=20)
    execute(sqlite_url, "UPDATE offers SET valid_until = '31/12/2026' WHERE offer_id = 2")
    before = snapshot(sqlite_url)

    # When it is adopted
    code, out, err = adopt_here(sqlite_url, tmp_path, monkeypatch, capsys, "--config", str(write_mapping(tmp_path)))

    # Then the one line names the column and the row, and nothing is changed
    assert code == 1
    assert err.splitlines()[0] == ("craftsync: offers.valid_until: 1 row holds a value that cannot be read as a date "
                                   "(such as '31/12/2026', where offer_id is 2); correct them first")
    assert snapshot(sqlite_url) == before


def test_every_write_another_program_makes_while_adopting_reaches_a_device(database_url: str, tmp_path: Path) -> None:
    # Given the shop's database, and its own program inserting and updating clients all the time
    make_shop(database_url, clients=20_000)
    stop, wrote = threading.Event(), [0]

    def shop_program() -> None:
        with driver(database_url) as conn:
            cursor = conn.cursor()
            mark = _PARAM[_dialect(database_url)]
            while not stop.is_set():
                i = wrote[0]
                cursor.execute(f"INSERT INTO clients (full_name, postcode, credit_limit) VALUES ({mark}, 'W1', 0)",
                               (f"Walk-in {i}",))
                cursor.execute(f"UPDATE clients SET postcode = {mark} WHERE client_no = {mark}",
                               (f"P{i}", 1 + (i * 7919) % 20_000))
                conn.commit()
                wrote[0] += 1
                time.sleep(0.002)  # busy, not a tight loop: SQLite's waiting writers must get their turn

    writer = threading.Thread(target=shop_program)
    writer.start()
    try:
        # When the database is adopted meanwhile
        done = adopt_process(database_url, tmp_path, "--config", str(write_mapping(tmp_path)))
        time.sleep(0.3)
    finally:
        stop.set()
        writer.join()
    assert done.returncode == 0, done.stderr
    assert wrote[0] > 0

    # Then a new device holds every client as the database holds it, each write included
    device = device_for(tmp_path, database_url)
    try:
        sync_cleanly(device, "customers")
        central = {f"{key:032d}": (name, postcode)
                   for key, name, postcode in query(database_url, "SELECT client_no, full_name, postcode FROM clients")}
        local = {row["id"]: (row["name"], row["zip"]) for row in device.sql("SELECT id, name, zip FROM customers")}
        assert local == central
    finally:
        device.close()
