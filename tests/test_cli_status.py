"""``craftsync status`` (docs/CLI.md): the connection, each entity's pending changes, conflicts,
rejected records and last run, and the open conflicts, in plain lines (or one JSON object),
in each state a desktop can be in. The CLI is the installed console script.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from tests.support.process import CRAFTSYNC, CRAFTSYNC_SCRIPT, free_port
from tests.support.device import Device

pytestmark = [pytest.mark.redis, pytest.mark.timeout(180)]

TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def status(device: Device, *args: str, **env: str) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """``craftsync status``: the result, and its lines by their first word."""
    assert CRAFTSYNC == [str(CRAFTSYNC_SCRIPT)], f"the console script is not installed: {CRAFTSYNC}"
    result = device.cli("status", *args, env=device.env(**env) if env else None)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr
    lines = {line.split(":")[0].split()[0]: line for line in result.stdout.splitlines()}
    return result, lines


def entity_line(pending: int, conflicts: int, rejected: int) -> str:
    return rf"pending +{pending}  conflicts +{conflicts}  rejected +{rejected}  "


def test_a_new_desktop_online_has_nothing_pending_and_never_synced(device: Device) -> None:
    result, lines = status(device)
    assert list(lines) == ["remote", "customers", "quotes", "orders", "open"], result.stdout
    assert re.fullmatch(rf"remote: +online {re.escape(device.central.url)}", lines["remote"]), lines["remote"]
    for entity in ("customers", "quotes", "orders"):
        assert re.fullmatch(rf"{entity} +{entity_line(0, 0, 0)}never synced", lines[entity]), lines[entity]
    assert lines["open"] == "open conflicts: 0"


def test_pending_changes_and_the_last_run_are_shown(device: Device) -> None:
    # Given two customers the host app added, synced, and then a third one not yet synced
    device.sql("INSERT INTO customers (name) VALUES ('Ann')")
    device.sql("INSERT INTO customers (name) VALUES ('Bob')")
    assert device.cli("sync", "customers", "--inline").returncode == 0
    device.sql("INSERT INTO customers (name) VALUES ('Cy')")
    # When the user asks for the status
    _, lines = status(device)
    # Then customers show one pending change and a completed last run; the others never synced
    assert re.fullmatch(rf"customers +{entity_line(1, 0, 0)}last run completed at {TIME}", lines["customers"]), \
        lines["customers"]
    assert lines["quotes"].endswith("never synced")
    # And the JSON form says the same, with the run's totals
    result, _ = status(device, "--json")
    report = json.loads(result.stdout)
    customers = report["entities"]["customers"]
    assert (customers["pending"], customers["last_run"]["status"], customers["last_run"]["pushed"]) == (1, "completed", 2)


def test_an_open_conflict_is_counted(device: Device) -> None:
    # Given a customer changed on both sides and synced under the manual policy
    device.sql("INSERT INTO customers (name) VALUES ('Ann')")
    assert device.cli("sync", "customers", "--inline").returncode == 0
    (record_id,) = device.live("customers")
    version = device.central.get("customers", record_id)["version"]
    pushed = device.central.push("customers", [{"id": record_id, "name": "Ann (server)", "base_version": version}])
    assert pushed[0]["status"] == "updated", pushed
    device.sql("UPDATE customers SET name = 'Ann (here)' WHERE id = ?", record_id)
    assert device.cli("sync", "customers", "--inline", "--conflicts", "manual").returncode == 3
    # When the user asks for the status
    _, lines = status(device)
    # Then the conflict is counted for customers and in total
    assert re.fullmatch(rf"customers +{entity_line(0, 1, 0)}last run conflicts at {TIME}", lines["customers"]), \
        lines["customers"]
    assert lines["open"] == "open conflicts: 1"


def test_an_unreachable_remote_is_offline_and_status_still_exits_0(device: Device) -> None:
    url = f"http://127.0.0.1:{free_port()}/api"
    _, lines = status(device, REMOTE_API_URL=url)
    assert lines["remote"].startswith(f"remote:    offline {url} "), lines["remote"]
    assert lines["customers"].endswith("never synced")


def test_a_wrong_key_is_refused_in_plain_words(device: Device) -> None:
    _, lines = status(device, REMOTE_API_KEY="not-the-key")
    assert lines["remote"].startswith(f"remote:    refused {device.central.url} "), lines["remote"]
    assert "Traceback" not in lines["remote"]


def test_an_unreadable_database_is_one_line_and_exit_1(device: Device) -> None:
    # Given a database path that is a directory
    folder = device.tmp / "folder.db"
    folder.mkdir()
    result = device.cli("status", "--db", str(folder))
    assert result.returncode == 1, (result.stdout, result.stderr)
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("craftsync: ") and "Traceback" not in result.stderr, result.stderr
    assert result.stdout == ""
