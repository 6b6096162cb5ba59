"""``craftsync sync`` as a user runs it (spec §3): exit codes 0 / 1 / 3 with ``--wait`` and
``--inline``, one JSON object with ``--json``, one line and no traceback when a service is
missing, and conflicts listed and settled from the command line.

Each test has a Redis server of its own: ``--wait`` follows the server-wide events channel.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.device import Device, assert_identical
from tests.support.worker import (
    CRAFTSYNC,
    Central,
    RedisDB,
    clean_env,
    free_port,
)
from tests.support.process import wait_until
from craftsync.shell.preferences import PreferenceStore
from craftsync.worker.events import channel


pytestmark = [pytest.mark.redis, pytest.mark.timeout(180)]


@pytest.fixture
def device(tmp_path: Path, private_redis: RedisDB, central: Central) -> Iterator[Device]:
    one = Device.with_workers(tmp_path, central, private_redis)
    yield one
    one.close()


def summary(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The one JSON object ``--json`` prints (nothing else on stdout)."""
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    data = json.loads(lines[0])
    assert isinstance(data, dict)
    return data


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("craftsync: "), lines
    return lines[0]


def closed_api_url() -> str:
    return f"http://127.0.0.1:{free_port()}/api"


def same_field_conflict(device: Device) -> str:
    """A customer synced with --inline whose phone then changes differently on the server
    (another device's push, with the right base_version) and locally (the host app's SQL)."""
    device.sql("INSERT INTO customers (name, phone) VALUES ('Ann Archer', '0100')")
    record_id = device.sql("SELECT id FROM customers WHERE phone = '0100'")[0]["id"]
    assert device.cli("sync", "customers", "--inline", env=device.env(REDIS_URL="")).returncode == 0
    remote = device.central.get("customers", record_id)
    response = device.central.http.post(
        "/customers", json={**{k: v for k, v in remote.items() if k != "version"}, "phone": "0200 server",
                            "base_version": remote["version"]})
    assert response.status_code == 200, response.text
    device.sql("UPDATE customers SET phone = '0300 local' WHERE id = ?", record_id)
    return record_id


# -- --wait: through the queue and the workers ----------------------------------------------


def test_sync_wait_exits_0_on_success_and_json_prints_one_object(device: Device) -> None:
    # Given local changes of each entity and a running worker
    device.sql("INSERT INTO customers (name) VALUES ('Ann Archer'), ('Bob Baker')")
    device.start_worker()
    # When everything is synced with --wait --json
    result = device.cli("sync", "--wait", "--json")
    # Then it exits 0 and prints one summary object with a completed run per entity
    assert result.returncode == 0, result.stderr
    data = summary(result)
    assert data["status"] == "completed"
    assert [(r["entity"], r["type"]) for r in data["runs"]] == [
        ("customers", "completed"), ("quotes", "completed"), ("orders", "completed")]
    assert data["runs"][0]["pushed"] == 2
    assert_identical(device, "customers", count=2)
    # And without --json it still exits 0, showing progress on stderr only
    plain = device.cli("sync", "customers", "--wait")
    assert (plain.returncode, plain.stdout) == (0, ""), plain.stderr
    assert "customers" in plain.stderr


def test_sync_wait_exits_1_when_the_sync_fails(device: Device) -> None:
    # Given a worker whose remote API is down (nothing listens on its port)
    device.sql("INSERT INTO customers (name) VALUES ('Ann Archer')")
    device.start_worker(REMOTE_API_URL=closed_api_url())
    # When a sync is run with --wait
    result = device.cli("sync", "customers", "--wait", "--json")
    # Then it exits 1 with a failed run that says why
    assert result.returncode == 1, result.stderr
    data = summary(result)
    assert data["status"] == "failed"
    assert data["runs"][0]["type"] == "failed" and data["runs"][0]["error"].startswith("Nothing answers at "), data
    assert "Errno" not in data["runs"][0]["error"], data
    assert device.sql("SELECT status FROM sync_runs")[0]["status"] == "failed"


def test_sync_wait_exits_3_on_open_conflicts_and_0_once_they_are_settled(device: Device) -> None:
    # Given a customer whose phone changed differently on the server and locally
    record_id = same_field_conflict(device)
    device.start_worker()
    # When it is synced with the manual conflict policy
    result = device.cli("sync", "customers", "--wait", "--json", "--conflicts", "manual")
    # Then the sync exits 3 and the conflict is listed with both values
    assert result.returncode == 3, result.stderr
    assert summary(result)["status"] == "conflicts"
    listed = device.cli("conflicts", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    conflicts = json.loads(listed.stdout)
    assert [(c["entity"], c["record_id"], c["fields"]) for c in conflicts] == [("customers", record_id, ["phone"])]
    assert (conflicts[0]["local"]["phone"], conflicts[0]["remote"]["phone"]) == ("0300 local", "0200 server")
    # When the user keeps the local version and syncs again
    settled = device.cli("conflicts", "resolve", str(conflicts[0]["id"]), "--use", "local")
    assert settled.returncode == 0, settled.stderr
    again = device.cli("sync", "customers", "--wait")
    # Then the sync exits 0 and the server holds the local value
    assert again.returncode == 0, again.stderr
    assert device.central.get("customers", record_id)["phone"] == "0300 local"
    assert json.loads(device.cli("conflicts", "list", "--json").stdout) == []
    assert_identical(device, "customers", count=1)


def test_sync_wait_follows_only_the_run_it_requested(device: Device) -> None:
    # Given `craftsync sync --wait` waiting for its run, with no worker to run it yet
    waiting = subprocess.Popen([*CRAFTSYNC, "sync", "customers", "--wait", "--json"], env=device.env(),
                               cwd=device.home, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        client = device.redis.client
        queued = wait_until(lambda: client.hget("craftsync:queued:customers", "run_id"), timeout=30,
                            what="the request to be queued").decode()
        # When another run of customers (another desktop sharing the Redis) starts and ends
        for kind in ("started", "completed"):
            client.publish(channel(client), json.dumps(
                {"type": kind, "run_id": "f" * 32, "entity": "customers", "direction": "both", "done": 0,
                 "total": 0, "pushed": 0, "pulled": 0, "conflicts": 0, "rate": 0, "eta_s": 0, "error": None,
                 "status": "completed", "ts": "2026-01-01T00:00:00.000Z"}))
        # Then the command does not take that run for its own: it is still waiting for run `queued`
        time.sleep(3)
        assert waiting.poll() is None, (
            f"exited {waiting.returncode} on another run's events while its own run {queued!r} had not "
            f"started: {waiting.communicate()[0]}")
    finally:
        waiting.kill()
        waiting.communicate(timeout=10)


# -- --inline: in this process, without Redis ----------------------------------------------


def test_inline_gives_the_same_exit_codes_without_redis(device: Device) -> None:
    no_redis = device.env(REDIS_URL="")
    # Given local changes: an inline sync exits 0, with one JSON object
    device.sql("INSERT INTO customers (name) VALUES ('Ann Archer')")
    ok = device.cli("sync", "--inline", "--json", env=no_redis)
    assert ok.returncode == 0, ok.stderr
    data = summary(ok)
    assert data["status"] == "completed"
    assert [(r["entity"], r["status"]) for r in data["runs"]] == [
        ("customers", "completed"), ("quotes", "completed"), ("orders", "completed")]
    # Given the remote API down: it exits 1
    device.sql("INSERT INTO customers (name) VALUES ('Bob Baker')")
    down = device.cli("sync", "customers", "--inline", "--json",
                      env=device.env(REDIS_URL="", REMOTE_API_URL=closed_api_url()))
    assert down.returncode == 1, down.stderr
    assert summary(down)["status"] == "failed"
    assert "Traceback" not in down.stderr
    # Given a same-field conflict under the manual policy: it exits 3
    same_field_conflict(device)
    clash = device.cli("sync", "customers", "--inline", "--json", "--conflicts", "manual", env=no_redis)
    assert clash.returncode == 3, clash.stderr
    assert summary(clash)["status"] == "conflicts"


# -- missing services ----------------------------------------------------------------------


def run_cli(tmp_path: Path, *args: str, **variables: str) -> subprocess.CompletedProcess[str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = clean_env(home, CRAFTSYNC_DB=str(tmp_path / "local.db"), **variables)
    return subprocess.run([*CRAFTSYNC, *args], env=env, cwd=home, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, check=False)


@pytest.mark.parametrize("wait", [[], ["--wait"]], ids=["queue", "wait"])
def test_without_redis_url_or_running_app_sync_says_so_and_suggests_inline(tmp_path: Path, wait: list[str]) -> None:
    # Given no REDIS_URL and no running `craftsync run` (an empty data dir)
    # When a sync is requested
    result = run_cli(tmp_path, "sync", "customers", *wait, REMOTE_API_URL=closed_api_url(), REMOTE_API_KEY="k" * 20)
    # Then it exits 1 with one line that suggests --inline
    assert result.returncode == 1
    assert "--inline" in one_line_error(result)


@pytest.mark.parametrize("wait", [[], ["--wait"]], ids=["queue", "wait"])
def test_unreachable_redis_is_one_line_and_exit_1(tmp_path: Path, wait: list[str]) -> None:
    # Given REDIS_URL pointing at a port where nothing listens
    url = f"redis://127.0.0.1:{free_port()}/0"
    # When a sync is requested
    started = time.monotonic()
    result = run_cli(tmp_path, "sync", "customers", *wait, REDIS_URL=url)
    # Then it exits 1 with one line naming the broker, promptly
    assert result.returncode == 1
    assert "broker" in one_line_error(result)
    assert time.monotonic() - started < 30


# -- the app's saved settings ----------------------------------------------------------------


def test_the_cli_follows_the_conflict_policy_saved_in_the_app_and_exits_3_while_the_conflict_stays_open(
    device: Device,
) -> None:
    # Given "Ask me" chosen in the app's settings, and a same-field conflict
    PreferenceStore(device.home).update({"conflict_policy": "manual"})
    record_id = same_field_conflict(device)
    no_redis = device.env(REDIS_URL="")
    # When the user syncs from the command line without a --conflicts flag
    result = device.cli("sync", "customers", "--inline", "--json", env=no_redis)
    # Then the saved policy holds: the conflict stays open (exit 3) and the local edit is kept
    assert result.returncode == 3, result.stderr
    assert summary(result)["status"] == "conflicts"
    assert device.sql("SELECT phone FROM customers WHERE id = ?", record_id)[0]["phone"] == "0300 local"
    assert device.central.get("customers", record_id)["phone"] == "0200 server"


def test_a_conflicts_flag_overrides_the_policy_saved_in_the_app(device: Device) -> None:
    # Given "Ask me" saved in the app, and a same-field conflict
    PreferenceStore(device.home).update({"conflict_policy": "manual"})
    record_id = same_field_conflict(device)
    # When the user syncs with --conflicts remote
    forced = device.cli("sync", "customers", "--inline", "--json", "--conflicts", "remote",
                        env=device.env(REDIS_URL=""))
    # Then the flag wins: the server's value is taken and nothing is left open
    assert forced.returncode == 0, forced.stderr
    assert device.sql("SELECT phone FROM customers WHERE id = ?", record_id)[0]["phone"] == "0200 server"


def test_the_cli_follows_the_direction_saved_in_the_app(device: Device) -> None:
    # Given "Pull" as the app's default direction and a local change
    PreferenceStore(device.home).update({"default_direction": "pull"})
    device.sql("INSERT INTO customers (name) VALUES ('Cleo Cole')")
    # When the user syncs without --direction: the change stays local, pending
    result = device.cli("sync", "customers", "--inline", "--json", env=device.env(REDIS_URL=""))
    assert result.returncode == 0, result.stderr
    assert summary(result)["runs"][0]["direction"] == "pull"
    assert device.central.http.get("/customers").json()["records"] == []


def test_the_cli_syncs_with_the_address_and_key_saved_in_the_app(device: Device) -> None:
    # Given the server's address and key saved in the app (not in the environment)
    PreferenceStore(device.home).update({"remote_url": device.central.url, "api_key_url": device.central.url})
    PreferenceStore(device.home).set_api_key(device.central.key)
    device.sql("INSERT INTO customers (name) VALUES ('Dora Dumont')")
    env = device.env(REDIS_URL="", REMOTE_API_URL="", REMOTE_API_KEY="",
                     PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
    # When the user syncs from the command line
    result = device.cli("sync", "customers", "--inline", "--json", env=env)
    # Then it reaches that server with that key
    assert result.returncode == 0, result.stderr
    names = [r["name"] for r in device.central.http.get("/customers").json()["records"]]
    assert names == ["Dora Dumont"]


def test_status_accepts_db_after_the_command_name(tmp_path: Path) -> None:
    home = tmp_path / "home"
    database = tmp_path / "elsewhere" / "shop.db"
    result = subprocess.run([*CRAFTSYNC, "status", "--db", str(database), "--json"], env=clean_env(home),
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["database"] == str(database)
    assert database.exists()


def test_the_cli_never_sends_the_key_saved_for_one_address_to_another(device: Device) -> None:
    # Given a key saved in the app for the business's server, and REMOTE_API_URL naming another
    PreferenceStore(device.home).update({"remote_url": device.central.url, "api_key_url": device.central.url})
    PreferenceStore(device.home).set_api_key(device.central.key)
    env = device.env(REDIS_URL="", REMOTE_API_URL=closed_api_url(), REMOTE_API_KEY="",
                     PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
    # When the user syncs from the command line
    result = device.cli("sync", "customers", "--inline", env=env)
    # Then it refuses in one line for want of a key, rather than send the other server's key
    assert result.returncode == 1
    assert "no API key" in one_line_error(result)
