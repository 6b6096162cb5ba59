"""Which remote API a desktop syncs with, and with which key: the environment, the saved
settings, or the bundled demo server, in that order.

The key follows the address: a key saved in the settings is used only with the address it
was saved for (``Preferences.api_key_url``), so changing the address never sends the old
server's key to the new one; the demo server's key is used only with the demo server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from craftsync.shell.preferences import Preferences

Source = Literal["environment", "saved", "demo"]


@dataclass(frozen=True)
class Demo:
    """The demo server this session started: its address and its per-launch key."""

    url: str
    key: str = field(repr=False)


@dataclass(frozen=True)
class RemoteChoice:
    """The remote address and key in force, and where each came from (None: there is none)."""

    url: str | None = None
    url_source: Source | None = None
    key: str | None = field(default=None, repr=False)
    key_source: Source | None = None

    @property
    def usable(self) -> bool:
        return bool(self.url and self.key)


def choose_remote(
    *,
    env_url: str | None,
    env_key: str | None,
    prefs: Preferences,
    saved_key: str | None,
    demo: Demo | None,
) -> RemoteChoice:
    """The address and key a sync uses now."""
    url: str | None
    url_source: Source | None
    if env_url:
        url, url_source = env_url, "environment"
    elif prefs.remote_url:
        url, url_source = prefs.remote_url, "saved"
    elif demo is not None:
        url, url_source = demo.url, "demo"
    else:
        return RemoteChoice()
    if env_key:
        return RemoteChoice(url, url_source, env_key, "environment")
    if saved_key and key_belongs(prefs, url):
        return RemoteChoice(url, url_source, saved_key, "saved")
    if demo is not None and url == demo.url:
        return RemoteChoice(url, url_source, demo.key, "demo")
    return RemoteChoice(url, url_source)


def key_belongs(prefs: Preferences, url: str) -> bool:
    """Whether the saved key was saved for ``url`` (a key saved before keys were tied to an
    address belongs to the saved address)."""
    owner = prefs.api_key_url or prefs.remote_url
    return owner is None or _same(owner, url)


def _same(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")
