"""Services a test can take away and bring back: a Redis server of its own and the
reference server, each restarted on the same port with the same data.

``RestartableRedis`` runs ``redis-server`` on a free loopback port; ``kill`` is a crash (with
no persistence it comes back empty), ``stop`` a clean shutdown (with ``persist`` it saves its
data and loads it again on ``start``, as a packaged Redis does). ``restart_central`` stops a
``Central`` and starts it again on its port and database.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import redis

from tests.conftest import service_missing
from tests.support.api import API_KEY
from tests.support.process import RedisDB, Service, clean_env, free_port, start_server, wait_until
from tests.support.worker import Central

#: How long a Redis or a reference server gets to answer after it is started.
START_TIMEOUT_S = 30


class RestartableRedis:
    """``redis-server`` on a free loopback port, its files in ``directory``."""

    def __init__(self, directory: Path, *, persist: bool = False, port: int | None = None,
                 password: str | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            service_missing("redis-server is not installed (apt-get install redis-server)")
        self.binary, self.directory, self.port, self.password = str(binary), directory, port or free_port(), password
        # With persistence, a clean shutdown saves the data and a start loads it; a crash loses it.
        self.save = "3600 1" if persist else ""
        self.url = f"redis://{f':{password}@' if password else ''}127.0.0.1:{self.port}/0"
        self.client = redis.Redis(host="127.0.0.1", port=self.port, password=password, socket_connect_timeout=1)
        self.db = RedisDB(0, self.url, self.client)
        self.service: Service | None = None
        self.starts = 0

    def start(self) -> RestartableRedis:
        """Start it and wait until it answers."""
        argv = [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", self.save,
                "--appendonly", "no", "--dir", str(self.directory),
                *(["--requirepass", self.password] if self.password else [])]
        self.starts += 1
        service = self.service = Service(argv, env={}, log=self.directory / f"redis-{self.starts}.log",
                                         cwd=self.directory)

        def answers() -> bool:
            if not service.alive():
                pytest.fail(f"redis-server exited:\n{service.tail()}")
            try:
                return bool(self.client.ping())
            except redis.RedisError:
                return False

        wait_until(answers, timeout=START_TIMEOUT_S, what="the private redis-server")
        return self

    def kill(self) -> None:
        """SIGKILL it, as a crash or the OOM killer would."""
        assert self.service is not None
        self.service.kill()

    def stop(self) -> None:
        """Shut it down cleanly (SIGTERM: it saves its data first when it persists)."""
        assert self.service is not None
        self.service.stop(timeout=10)

    def close(self) -> None:
        self.client.close()
        if self.service is not None and self.service.alive():
            self.service.kill()


def central_env(tmp_path: Path, database_url: str) -> dict[str, str]:
    """The environment the ``central`` fixture starts its server with."""
    return clean_env(tmp_path / "server-home", DATABASE_URL=database_url, API_KEYS=API_KEY,
                     RATE_LIMIT="1000000/minute")


def stop_central(central: Central, *, crash: bool = False) -> None:
    """Take the server away: SIGKILL with ``crash``, else SIGTERM."""
    if crash:
        central.service.kill()
    else:
        central.service.stop()


def start_central(central: Central, tmp_path: Path) -> None:
    """Start the server again on its port and database, once its health check answers."""
    port = int(central.url.rsplit(":", 1)[1].split("/", 1)[0])
    central.service = start_server(central_env(tmp_path, central.database_url), port=port,
                                   log=tmp_path / "server.log", cwd=tmp_path / "server-home",
                                   timeout=START_TIMEOUT_S, fail=pytest.fail)
