"""What the benchmark scripts in this folder share: the API key of their servers, the
customers they send, a fresh PostgreSQL or MariaDB database, CPU and machine notes, and the
doc they write their sections into. (Processes, ports, the server, Redis and events come from
``tests.support.process``, shared with the tests.)

Imported as ``tests.bench.bench_common``: each script puts the repository root on
``sys.path`` first.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import psutil

from tests.support.api import new_id

INTRO: Final = (
    "# Benchmarks\n\n"
    "How the figures here are produced: each benchmark is a script under `tests/bench/` that "
    "serves the real code over real HTTP on this machine and measures throughput or latency "
    "with the wall clock. Absolute numbers depend on the machine, so every claim is a ratio "
    "against a baseline measured in the same run, on the same server and database (for example "
    "batched push against one request per record, or a late page against the first page), and "
    "each section names the command that produced it so that it can be re-run.\n"
)

#: The key of the servers a benchmark starts (a new one each run).
API_KEY: Final = "bench-" + secrets.token_hex(8)
POSTGRES_ADMIN_URL: Final = os.environ.get(
    "CRAFTSYNC_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
MARIADB_ADMIN_URL: Final = os.environ.get("CRAFTSYNC_BENCH_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/mysql")
#: The paragraph a person writes under a section's figures; a script's rewrite keeps it.
READING: Final = "**Reading it.**"


# --------------------------------------------------------------------------- records


FIRST = ["Ann", "Ben", "Carla", "Dev", "Emma", "Farid", "Grace", "Hugo", "Ines", "Jamal", "Kira", "Liam", "Mona", "Nils", "Olga", "Pavel", "Quinn", "Rosa", "Sami", "Tara"]
LAST = ["Archer", "Baker", "Carver", "Dyer", "Fletcher", "Glazer", "Hooper", "Joiner", "Mason", "Potter", "Sawyer", "Smith", "Thatcher", "Turner", "Weaver"]
STREETS = ["Maple", "Oak", "Birch", "Cedar", "Elm", "Willow", "Mill", "Church", "Station", "Bridge"]
KINDS = ["Street", "Road", "Lane", "Avenue", "Way"]
CITIES = [
    ("Portland", "OR", "US"), ("Burlington", "VT", "US"), ("Asheville", "NC", "US"), ("Madison", "WI", "US"),
    ("Boulder", "CO", "US"), ("Santa Fe", "NM", "US"), ("Halifax", "NS", "CA"), ("Victoria", "BC", "CA"),
]
TRADES = ["Woodworks", "Joinery", "Pottery Studio", "Leather Goods", "Glassworks", "Textiles", "Metalcraft", "Furniture Co."]
NOTES = [
    "Prefers email. Repeat customer.",
    "Wants a quote for a dining table.",
    "Net 30. Invoice the office.",
    "Met at the county craft fair.",
]


def customer_fields(rng: random.Random) -> dict[str, str]:
    """The fields a person fills in for a customer (every one of them)."""
    first, last = rng.choice(FIRST), rng.choice(LAST)
    city, state, country = rng.choice(CITIES)
    return {
        "name": f"{first} {last}",
        "company": f"{last} {rng.choice(TRADES)}",
        "email": f"{first.lower()}.{last.lower()}{rng.randrange(1000)}@example.com",
        "phone": f"+1 {rng.randrange(200, 999)}-{rng.randrange(200, 999)}-{rng.randrange(10000):04d}",
        "address": f"{rng.randrange(1, 9999)} {rng.choice(STREETS)} {rng.choice(KINDS)}",
        "city": city,
        "state": state,
        "zip": f"{rng.randrange(10000, 99999)}",
        "country": country,
        "notes": rng.choice(NOTES),
    }


def make_customers(count: int, seed: int) -> Iterator[dict[str, Any]]:
    """Customers as another device would push them: time-ordered ids and times set."""
    rng = random.Random(seed)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    for i in range(count):
        when = start + timedelta(seconds=37 * i, milliseconds=i % 1000)
        stamp = when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"
        yield {"id": new_id(), **customer_fields(rng), "created_at": stamp, "updated_at": stamp}


# --------------------------------------------------------------------------- databases


@contextmanager
def _fresh_database(admin_url: str, prefix: str, version_sql: str, drop_suffix: str) -> Iterator[tuple[str, str, str]]:
    """A fresh database ``<prefix><random>`` next to ``admin_url``, dropped at the end: its
    SQLAlchemy URL, its name and the server's version."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"{prefix}{secrets.token_hex(6)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        version = str(conn.execute(text(version_sql)).scalar_one()).split()[0].split("-")[0]
        conn.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False), name, version
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name}{drop_suffix}"))
        admin.dispose()


def postgres_database(prefix: str) -> Any:
    """A fresh PostgreSQL database next to POSTGRES_ADMIN_URL (see ``_fresh_database``)."""
    return _fresh_database(POSTGRES_ADMIN_URL, prefix, "SHOW server_version", " WITH (FORCE)")


def mariadb_database(prefix: str) -> Any:
    """A fresh MariaDB/MySQL database next to MARIADB_ADMIN_URL (see ``_fresh_database``)."""
    return _fresh_database(MARIADB_ADMIN_URL, prefix, "SELECT VERSION()", "")


# --------------------------------------------------------------------------- reporting


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of a process (None when it cannot be read)."""
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return times.user + times.system


def verdict(met: bool) -> str:
    return "met" if met else "**missed**"


def cpu_note(cpu: float | None, seconds: float) -> str:
    return "n/a" if cpu is None else f"{cpu:.1f} s ({cpu / seconds:.0%} of a core)"


def machine_note(rest: str) -> str:
    """Cores, CPU model, OS and Python of this machine, then ``rest``."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}{rest}")


def add_output_arguments(parser: argparse.ArgumentParser, doc: Path) -> None:
    """--doc, --no-doc, --notes and --json: where the results go besides the printed table."""
    parser.add_argument("--doc", type=Path, default=doc, help="benchmarks doc to update (default docs/BENCHMARKS.md)")
    parser.add_argument("--no-doc", action="store_true", help="print the results only")
    parser.add_argument("--notes", type=Path, help="a Markdown file whose text is appended to the doc section")
    parser.add_argument("--json", type=Path, help="also write the raw results here as JSON")


def section_head(section: str, command: str, machine: str) -> list[str]:
    """The first lines of a doc section: its heading, when and by which command it was
    measured, and the machine (``machine_note(machine)``)."""
    return [
        section,
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with:",
        "",
        "```",
        command,
        "```",
        "",
        f"- Machine: {machine_note(machine)}.",
    ]


def write_doc(path: Path, section: str, text: str) -> None:
    """Replace the section headed ``section`` of the benchmarks doc (read just now) with
    ``text``, or append it, or create the doc with it; the rest of the doc stays, and so does
    the section's hand-written ``**Reading it.**`` text when ``text`` brings none."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(INTRO + "\n" + text)
        return
    lines = path.read_text().splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == section), None)
    if start is None:
        body = "".join(lines).rstrip("\n") + "\n\n" + text
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        text = _keep_reading(lines[start:end], text)
        tail = "".join(lines[end:])
        body = "".join(lines[:start]) + text + ("\n" + tail if tail else "")
    path.write_text(body)


def _keep_reading(old: list[str], text: str) -> str:
    """``text`` followed by the old section's lines from its ``**Reading it.**`` on, when
    ``text`` has no such paragraph of its own."""
    if READING in text:
        return text
    at = next((i for i, line in enumerate(old) if line.startswith(READING)), None)
    if at is None:
        return text
    return text.rstrip("\n") + "\n\n" + "".join(old[at:]).rstrip("\n") + "\n"
