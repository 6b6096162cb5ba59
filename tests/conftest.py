"""Shared fixtures: real databases, the API app, and helpers for services that may be absent.

A test that needs PostgreSQL, MariaDB or Redis skips with the reason when the service is not
reachable on a developer's machine, and fails when ``CI=true``: CI must run everything.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

#: Where the test databases live; override to point the suite at other servers.
POSTGRES_ADMIN_URL = os.environ.get("CRAFTSYNC_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
MARIADB_ADMIN_URL = os.environ.get("CRAFTSYNC_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/mysql")
REDIS_TEST_URL = os.environ.get("CRAFTSYNC_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")

#: Helpers whose asserts should explain themselves (registered before anything imports them).
pytest.register_assert_rewrite("tests.support")
from tests.support.api import API_KEY  # noqa: E402,F401  (re-exported for test modules)

#: Every fixture of the suite, for every test module (tests/support/fixtures.py lists them).
pytest_plugins = ["tests.support.fixtures"]


def service_missing(reason: str) -> None:
    """Skip on a laptop without the service; fail in CI, where every service must run."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


def _fresh_database(admin_url: str, label: str) -> Iterator[str]:
    name = f"craftsync_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
    except Exception as exc:  # any driver error means: no usable server here
        admin.dispose()
        service_missing(f"{label} is not reachable at {make_url(admin_url).render_as_string()}: {type(exc).__name__}")
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            if label == "PostgreSQL":
                conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            else:
                conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def database_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """A new, empty central database on each backend the server supports."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'central.db'}"
    elif request.param == "postgresql":
        yield from _fresh_database(POSTGRES_ADMIN_URL, "PostgreSQL")
    else:
        yield from _fresh_database(MARIADB_ADMIN_URL, "MariaDB")


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    """A central database on SQLite only, for tests where the backend is not the point."""
    return f"sqlite:///{tmp_path / 'central.db'}"
