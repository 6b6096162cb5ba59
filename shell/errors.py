"""The shell's exceptions: what the desktop shell and the command line raise themselves.

Failures of a sync arrive from the worker as ``craftsync.worker.errors.SyncError`` (with
``plain``, the sentence for the user); the shell reports them at its edges (the CLI's
``main``, the UI server's routes and error handlers) and does not wrap them. What the shell
itself refuses or fails at is a ``ShellError``::

    ShellError
    ├── UsageError             a problem the user can fix: the one line the CLI prints (shell/commands.py)
    ├── SessionError           ``craftsync run`` cannot start its session (shell/session.py)
    ├── BrokerError            the embedded broker cannot start (shell/broker.py)
    ├── InvalidPreferences     a setting from the UI does not validate (shell/preferences.py)
    └── RecordRefused          a record from the UI cannot be saved, field by field (shell/records_api.py)

Foreign exceptions are translated where the shell meets them: redis's in
``craftsync.worker.broker`` (as ``BrokerUnavailable``, a ``SyncError``) and, while the
embedded broker starts, in ``shell/broker.py`` (as ``BrokerError``); sqlite3's in the
local store, httpx's in ``craftsync.worker.remote``. The UI server keeps one Flask error
handler for redis errors raised by calls that reach Redis directly, answering 503.
"""

from __future__ import annotations

from craftsync.shell import field_messages


class ShellError(Exception):
    """Raised for anything the shell refuses or fails at itself."""


class UsageError(ShellError):
    """Raised for a problem the user can fix; its message is the one line shown."""


class SessionError(ShellError):
    """Raised when the session cannot start; the message is one line for the user."""


class InvalidPreferences(ShellError, ValueError):
    """Raised when settings from the UI do not validate; the message says which and why."""

    def __init__(self, field: str, message: str, plain: str) -> None:
        super().__init__(f"{field}: {message}")
        #: The setting that was refused.
        self.field = field
        #: What to tell the user, next to that setting.
        self.plain = plain


class RecordRefused(ShellError):
    """Raised when a record cannot be saved: the fields' messages, and the one-line summary."""

    def __init__(self, fields: dict[str, str], message: str | None = None) -> None:
        super().__init__(message or field_messages.summary(fields))
        self.fields = fields
        self.message = message or field_messages.summary(fields)
