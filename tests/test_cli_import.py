"""``craftsync import ENTITY FILE.csv`` (docs/CLI.md): a bulk import pushed by any number of
real ``craftsync worker`` processes on real Redis, against the reference server over HTTP.

The CLI is the installed console script, run as a user runs it. What the import left is
read raw: the local rows with plain sqlite3, the central rows with plain SQL.
"""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import pytest

from tests.support.process import CRAFTSYNC, CRAFTSYNC_SCRIPT
from tests.support.device import Device, assert_identical
from tests.support.process import wait_until

pytestmark = [pytest.mark.redis, pytest.mark.timeout(180)]

#: More rows than one chunk (1,000), so that the chunks spread over the workers.
ROWS = 2_500
HEADER = ["name", "email", "city", "notes"]


def write_csv(path: Path, rows: list[list[str]], header: list[str] = HEADER) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def shop_rows(count: int) -> list[list[str]]:
    """Customers as a spreadsheet exports them: some cells empty, some text not ASCII."""
    return [[f"Kunde {i} Müller", f"k{i}@example.com", "Zürich" if i % 2 else "", f"line one\nline two {i}"]
            for i in range(count)]


def run_import(device: Device, *args: str) -> subprocess.CompletedProcess[str]:
    assert CRAFTSYNC == [str(CRAFTSYNC_SCRIPT)], f"the console script is not installed: {CRAFTSYNC}"
    return device.cli("import", *args)


def test_an_import_with_wait_stores_every_row_on_both_sides_exactly_as_written(device: Device, tmp_path: Path) -> None:
    # Given a CSV of 2,500 customers and two workers
    path = write_csv(tmp_path / "customers.csv", shop_rows(ROWS))
    device.start_worker()
    device.start_worker()
    # When the user imports it and waits
    result = run_import(device, "customers", str(path), "--wait")
    # Then the import ends with exit code 0 and nothing on stdout but progress on stderr
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    # And the local file holds every row exactly as written, an empty cell as NULL
    stored = {row["name"]: dict(row) for row in device.sql("SELECT name, email, city, notes FROM customers")}
    assert len(stored) == ROWS
    for name, email, city, notes in shop_rows(ROWS):
        assert stored[name] == {"name": name, "email": email, "city": city or None, "notes": notes}, name
    # And the server holds the same rows, field by field, with nothing pending
    assert_identical(device, "customers", count=ROWS)
    # And each record was created once on the server
    versions, _, counter = device.central.bookkeeping("customers")
    assert set(versions.values()) == {1} and counter == ROWS


def test_an_import_without_wait_says_what_it_queued_and_the_workers_push_it(device: Device, tmp_path: Path) -> None:
    # Given a CSV of 2,500 customers and a worker
    path = write_csv(tmp_path / "customers.csv", shop_rows(ROWS))
    device.start_worker()
    # When the user imports it without waiting
    result = run_import(device, "customers", str(path))
    # Then it says what it queued, in one plain line, and exits 0
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.strip().splitlines()
    assert line.startswith(f"queued: {ROWS} customers in 3 chunks (") and line.endswith(")"), line
    # And the workers push every row
    wait_until(lambda: len(device.central.stored("customers")) == ROWS, timeout=60, what="the import to reach the server")
    # (a chunk's rows are written locally once the server has answered for them)
    wait_until(lambda: len(device.live("customers")) == ROWS and device.not_synced() == [], timeout=30,
               what="the import to be stored locally")
    assert_identical(device, "customers", count=ROWS)


def test_a_row_the_server_refuses_is_kept_locally_with_its_reason_and_status_counts_it(
    device: Device, tmp_path: Path
) -> None:
    # Given a CSV whose second row has no name (a customer's name is required)
    path = write_csv(tmp_path / "customers.csv", [["Ann", "ann@example.com", "", ""], ["", "nobody@example.com", "", ""]])
    device.start_worker()
    # When it is imported
    result = run_import(device, "customers", str(path), "--wait")
    # Then the good row is on both sides and the refused one is quarantined locally with its reason
    assert result.returncode == 0, result.stderr
    assert [r["name"] for r in device.central.stored("customers").values()] == ["Ann"]
    refused = device.sql("SELECT c.email, m.sync_status, m.reason FROM customers c "
                            "JOIN sync_metadata m ON m.entity = 'customers' AND m.record_id = c.id WHERE c.name IS NULL")
    assert [(r["email"], r["sync_status"]) for r in refused] == [("nobody@example.com", "rejected")]
    assert "name" in refused[0]["reason"]
    # And craftsync status counts it
    status = device.cli("status")
    assert status.returncode == 0, status.stderr
    (customers,) = [line for line in status.stdout.splitlines() if line.startswith("customers")]
    assert customers.split()[:7] == ["customers", "pending", "0", "conflicts", "0", "rejected", "1"], customers


@pytest.mark.parametrize(
    ("content", "words"),
    [("nickname,email\nAnn,ann@example.com\n", "columns that are not fields of customers: nickname"),
     ("name,email\n", "holds no rows"),
     (b"name\n\xff\xfe\n", "is not a UTF-8 CSV file")],
    ids=["unknown-column", "no-rows", "not-utf8"],
)
def test_a_file_that_cannot_be_imported_is_one_line_and_exit_1_and_queues_nothing(
    device: Device, tmp_path: Path, content: str | bytes, words: str
) -> None:
    # Given a file the import cannot use
    path = tmp_path / "bad.csv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    # When the user imports it
    result = run_import(device, "customers", str(path))
    # Then one plain line names the problem, exit code 1, and nothing was queued or stored
    assert result.returncode == 1, (result.stdout, result.stderr)
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("craftsync: ") and words in line, line
    assert device.redis.client.keys("dramatiq:*import*") == []
    assert device.sql("SELECT count(*) FROM customers")[0][0] == 0


def test_a_missing_file_is_one_line_and_exit_1(device: Device, tmp_path: Path) -> None:
    result = run_import(device, "customers", str(tmp_path / "nowhere.csv"))
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("craftsync: cannot read ") and "nowhere.csv" in line, line
