"""The client side's settings (spec §2), read once at the edge and passed down.

Sources, later ones winning: built-in defaults, the runtime file a running ``craftsync run``
leaves in the user data dir (its embedded broker and demo server), then the environment
(which includes a ``.env`` file the CLI has loaded).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

from platformdirs import user_data_dir

from craftsync.worker.errors import ConfigurationError
from craftsync.worker.remote import RemoteSettings

APP_NAME: Final = "craftsync"
#: Worker processes ``craftsync run`` spawns unless told otherwise.
DEFAULT_WORKERS: Final = 2


def data_dir() -> Path:
    """Where the local database and the runtime file live by default."""
    return Path(os.environ.get("CRAFTSYNC_HOME") or user_data_dir(APP_NAME, appauthor=False))


def ensure_dir(path: Path) -> Path:
    """``path`` as a folder that exists, created (with its parents) readable by the user only.

    A fresh machine has no user data dir yet: nothing may assume one.
    """
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(f"cannot create the folder {path}: {exc.strerror or exc}") from exc
    return path


def make_private(folder: Path) -> Path:
    """``folder`` created if need be, then closed to other users: the folder 0700 and each
    file directly in it 0600, whatever the umask (an older version left them 0755 and 0644)."""
    ensure_dir(folder)
    try:
        folder.chmod(0o700)
        for entry in folder.iterdir():
            if entry.is_file() and not entry.is_symlink():
                entry.chmod(0o600)
    except OSError as exc:
        raise ConfigurationError(f"cannot make the folder {folder} private: {exc.strerror or exc}") from exc
    return folder


def create_private(path: Path) -> None:
    """Create the file at ``path`` readable by the user only (0600) unless it exists already,
    so that a program writing it next (SQLite) keeps that mode whatever the umask. An error is
    left for that program to meet and report.

    An existing file is never opened here: closing any descriptor of a file drops every POSIX
    lock this process holds on it, so opening and closing a database another thread has open
    would silently release that thread's SQLite locks (and let other processes write under
    it: the file then reads as damaged)."""
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError:
        pass  # there already (or cannot be made: SQLite says why)


def runtime_file() -> Path:
    """The file a running ``craftsync run`` describes itself in (0600, removed on exit)."""
    return data_dir() / "runtime.json"


def read_runtime() -> dict[str, Any]:
    """What a running ``craftsync run`` published, or {} when none is running."""
    try:
        data = json.loads(runtime_file().read_text())
    except (OSError, ValueError):
        return {}
    pid = data.get("pid")
    if not isinstance(pid, int) or not _alive(pid):
        return {}
    return data


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class Settings:
    """Everything the shell and the workers need to know about their surroundings."""

    database: Path
    remote_url: str | None = None
    remote_key: str | None = None
    redis_url: str | None = None
    workers: int = DEFAULT_WORKERS
    ca_bundle: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, use_runtime: bool = True) -> Settings:
        env = os.environ if environ is None else environ
        runtime = read_runtime() if use_runtime else {}
        workers = env.get("CRAFTSYNC_WORKERS", str(DEFAULT_WORKERS))
        if not (workers.isascii() and workers.isdigit()) or len(workers) > 3:
            raise ConfigurationError(f"CRAFTSYNC_WORKERS must be a whole number, not {workers!r}")
        return cls(
            database=Path(env.get("CRAFTSYNC_DB") or runtime.get("database") or data_dir() / "craftsync.db"),
            remote_url=env.get("REMOTE_API_URL") or runtime.get("remote_url"),
            remote_key=env.get("REMOTE_API_KEY") or runtime.get("remote_key"),
            redis_url=env.get("REDIS_URL") or runtime.get("redis_url"),
            workers=int(workers),
            ca_bundle=env.get("CRAFTSYNC_CA_BUNDLE") or None,
        )

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def remote(self) -> RemoteSettings:
        """Settings of the remote API client; ConfigurationError when the API is not configured."""
        if not self.remote_url:
            raise ConfigurationError("no remote API configured: set REMOTE_API_URL (or start 'craftsync run')")
        if not self.remote_key:
            raise ConfigurationError("no API key: set REMOTE_API_KEY or store one in the settings")
        return RemoteSettings(base_url=self.remote_url, api_key=self.remote_key, verify=self.ca_bundle or True)

    def to_env(self) -> dict[str, str]:
        """These settings as environment variables, for worker processes started by the shell."""
        env = {"CRAFTSYNC_DB": str(self.database), "CRAFTSYNC_WORKERS": str(self.workers)}
        for name, value in (("REMOTE_API_URL", self.remote_url), ("REMOTE_API_KEY", self.remote_key),
                            ("REDIS_URL", self.redis_url), ("CRAFTSYNC_CA_BUNDLE", self.ca_bundle)):
            if value:
                env[name] = value
        return env
