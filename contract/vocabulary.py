"""The sync vocabulary (CONTRACT §3, §7): the words the server, the worker, the shell and the
UI share, as typed names.

Each is a ``StrEnum``: a member *is* its wire string (``Direction.BOTH == "both"``), so JSON,
SQL and argparse take members as they are, and ``values(Direction)`` lists the spellings for
a ``choices=`` or a validation message. The UI reads the same lists from the UI API
(``GET /api/vocabulary``) instead of keeping a copy of its own.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class Entity(StrEnum):
    """The synced entities, in the order "all" syncs them (a quote needs its customer first)."""

    CUSTOMERS = "customers"
    QUOTES = "quotes"
    ORDERS = "orders"


class Direction(StrEnum):
    """Which way a run moves changes."""

    PUSH = "push"
    PULL = "pull"
    BOTH = "both"


class Policy(StrEnum):
    """How a run settles a conflict: the server's version wins, this device's wins, or the user decides."""

    REMOTE = "remote"
    LOCAL = "local"
    MANUAL = "manual"


class Resolution(StrEnum):
    """How the user settles one open conflict."""

    LOCAL = "local"
    REMOTE = "remote"
    MERGED = "merged"


class EventType(StrEnum):
    """The kinds of progress event a worker publishes (CONTRACT §7)."""

    STARTED = "started"
    PROGRESS = "progress"
    CONFLICT = "conflict"
    COMPLETED = "completed"
    FAILED = "failed"


#: "All" means every entity, in dependency order.
ALL_ENTITIES: Final[tuple[Entity, ...]] = tuple(Entity)


def values(kind: type[StrEnum]) -> tuple[str, ...]:
    """The wire spellings of a vocabulary, in declaration order."""
    return tuple(member.value for member in kind)
