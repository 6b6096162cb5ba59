"""What the user sets in the UI: sync preferences in a JSON file, the API key in the OS keyring.

The API key goes to the OS keyring when one is usable (Keychain, Credential Manager,
Secret Service); otherwise to a file in the user data dir that only the user can read
(mode 0600). It is never written to the preferences file, logged, or sent to the page
in clear (``masked`` shows its last four characters).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Final

import keyring
import keyring.errors
from keyring.backends import fail
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from craftsync.contract.vocabulary import Direction, Policy
from craftsync.shell.errors import InvalidPreferences
from craftsync.worker.settings import ensure_dir

#: Keyring service and user names under which the key is stored.
KEYRING_SERVICE: Final = "craftsync"
KEYRING_USER: Final = "remote-api-key"


#: What to tell the user when a setting is refused, by setting.
_PLAIN: Final = {
    "remote_url": "Enter the server's address, like https://sync.example.com/api.",
    "api_key_url": "Enter the server's address, like https://sync.example.com/api.",
    "auto_sync": "Tick the box, or leave it empty.",
    "sync_on_launch": "Tick the box, or leave it empty.",
    "interval_minutes": "Choose an interval from 5 minutes to 24 hours.",
    "default_direction": "Choose a direction: both ways, push or pull.",
    "conflict_policy": "Choose a conflict policy: server wins, this computer wins, or ask me.",
}


class Preferences(BaseModel):
    """Sync preferences (spec §8), validated whenever they change."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    remote_url: str | None = None
    #: The address the saved API key was saved for; the key is sent to that address only.
    api_key_url: str | None = None
    auto_sync: bool = True
    interval_minutes: int = Field(default=30, ge=5, le=24 * 60)
    sync_on_launch: bool = True
    default_direction: Direction = Direction.BOTH
    conflict_policy: Policy = Policy.REMOTE

    @field_validator("remote_url", "api_key_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")) or len(value) > 500:
            raise ValueError("must be an http:// or https:// URL")
        return value


class PreferenceStore:
    """Preferences in ``<dir>/settings.json`` and the API key in the keyring or ``<dir>/api-key``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / "settings.json"
        self.key_file = directory / "api-key"

    def load(self) -> Preferences:
        try:
            return Preferences.model_validate(json.loads(self.path.read_text()))
        except (OSError, ValueError, ValidationError):
            return Preferences()  # absent or damaged: the defaults

    def update(self, changes: dict[str, Any]) -> Preferences:
        """Apply and save ``changes``; InvalidPreferences (nothing saved) when one is invalid."""
        try:
            prefs = Preferences.model_validate({**self.load().model_dump(), **changes})
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            field = ".".join(str(p) for p in first["loc"]) or "settings"
            unknown = first["type"] == "extra_forbidden"
            message = "is not a setting" if unknown else first["msg"].removeprefix("Value error, ")
            plain = f"“{field}” is not a setting." if unknown else _PLAIN.get(field, f"Check the setting {field}.")
            raise InvalidPreferences(field, message, plain) from None
        ensure_dir(self.directory)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # the user's only, whatever the umask
        with os.fdopen(fd, "w") as handle:
            handle.write(prefs.model_dump_json(indent=2))
        os.chmod(tmp, 0o600)  # a leftover .tmp of an older version keeps its mode through O_TRUNC
        tmp.replace(self.path)
        return prefs

    # -- the API key -----------------------------------------------------------------------

    def api_key(self) -> str | None:
        if _keyring_usable():
            try:
                key = keyring.get_password(KEYRING_SERVICE, KEYRING_USER)
                if key:
                    return key
            except keyring.errors.KeyringError:
                pass
        try:
            return self.key_file.read_text().strip() or None
        except OSError:
            return None

    def set_api_key(self, key: str | None) -> str:
        """Store (or with None/"" remove) the key; returns where it went: keyring, file or removed."""
        self._remove_key()
        if not key:
            return "removed"
        if _keyring_usable():
            try:
                keyring.set_password(KEYRING_SERVICE, KEYRING_USER, key)
                return "keyring"
            except keyring.errors.KeyringError:
                pass
        ensure_dir(self.directory)
        fd = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(key)
        os.chmod(self.key_file, 0o600)
        return "file"

    def _remove_key(self) -> None:
        if _keyring_usable():
            try:
                keyring.delete_password(KEYRING_SERVICE, KEYRING_USER)
            except keyring.errors.KeyringError:
                pass
        self.key_file.unlink(missing_ok=True)


def masked(key: str | None) -> str:
    """A key as the page may show it: dots and its last four characters."""
    if not key:
        return ""
    return "•" * 6 + key[-4:] if len(key) > 8 else "•" * 8


def _keyring_usable() -> bool:
    return not isinstance(keyring.get_keyring(), fail.Keyring)
