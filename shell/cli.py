"""The ``craftsync`` command line (spec §3).

Configuration comes from the environment and a ``.env`` file in the working directory;
flags override both. Every failure a user can cause or meet (bad input, a service that
cannot be reached) ends with one line on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from collections.abc import Callable, Sequence

from dotenv import load_dotenv

from craftsync.contract.records import ENTITIES
from craftsync.shell.preferences import PreferenceStore
from craftsync.shell.remote_choice import choose_remote
from craftsync.contract.vocabulary import Direction, Policy, Resolution, values
from craftsync.shell.commands import cmd_conflicts, cmd_import, cmd_status, cmd_sync, cmd_worker
from craftsync.shell.errors import UsageError
from craftsync.worker.errors import SyncError
from craftsync.worker.settings import Settings, data_dir


def _port(value: str) -> int:
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number (1-65535)")
    return int(value)


def _count(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 64:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number from 1 to 64")
    return int(value)


def _entity(value: str) -> str:
    if value not in ENTITIES:
        raise argparse.ArgumentTypeError(f"{value!r} is not an entity; use {', '.join(ENTITIES)}")
    return value


def cmd_server(args: argparse.Namespace, settings: Settings) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from craftsync.server.config import ServerConfigError, ServerSettings
    from craftsync.server.serve import serve

    try:
        serve(ServerSettings.from_env(), host=args.host, port=args.port, demo=args.demo,
              certfile=args.certfile, keyfile=args.keyfile)
    except ServerConfigError as exc:
        raise UsageError(str(exc)) from exc
    except SQLAlchemyError as exc:
        raise UsageError(f"cannot open the database ({type(exc).__name__}): {_first_line(exc)}") from exc
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from exc
    return 0


def cmd_server_adopt(args: argparse.Namespace, settings: Settings) -> int:
    """Make the database of DATABASE_URL syncable (server/adopt.py); each problem found is a
    line on stderr, and nothing is changed."""
    from craftsync.server.adopt import AdoptionError, adopt, load_config
    from craftsync.server.config import ServerSettings

    try:
        requests = load_config(Path(args.config)) if args.config else None
        report = adopt(ServerSettings.from_env().database_url, requests, dry_run=args.dry_run)
    except AdoptionError as exc:
        for problem in exc.problems:
            _say(problem)
        count = len(exc.problems)
        raise UsageError(f"nothing was changed ({count} problem{'s' if count > 1 else ''} above)") from exc
    if report.already:
        print(report.already[0].upper() + report.already[1:] + ".")
        return 0
    print("\n".join(report.notes))
    print("Changes (dry run: none was made):" if args.dry_run else "Changes made:")
    print("\n".join(f"- {line}" for line in report.changes))
    if report.done:
        print(f"Adopted in {report.seconds:.1f} s (reading and checking {report.seconds - report.change_seconds:.1f} s, "
              f"the changes {report.change_seconds:.1f} s); `craftsync server` now serves this database.")
    return 0


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    import signal

    from craftsync.shell.session import Session, SessionError
    from craftsync.shell.window import NoGui, gui_problem, open_browser, open_window

    session = Session(Settings.from_env(use_runtime=False).with_overrides(database=settings.database))
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: session.stop())
    try:
        session.start()
    except SessionError as exc:
        raise UsageError(str(exc)) from exc
    print(f"UI: {session.launch_url}", flush=True)
    try:
        problem = "--browser was given" if args.browser else gui_problem()
        if problem is None:
            try:
                open_window(session.launch_url, session._stopped, session.stop)
                return 0
            except NoGui as exc:
                problem = str(exc)
        print(f"Opening the UI in the browser ({problem}).", flush=True)
        if not open_browser(session.launch_url):
            print("No browser found: open the UI address above yourself.", flush=True)
        session.wait()
    finally:
        session.stop()
    return 0


def cmd_broker(args: argparse.Namespace, settings: Settings) -> int:
    """Serve the embedded broker; with a loopback REDIS_URL set (the Procfile's shared .env),
    serve exactly that address and password, so every process finds it."""
    from urllib.parse import urlsplit

    from craftsync.shell.broker import BrokerError, serve_forever

    port, password = args.port, None
    if settings.redis_url:
        url = urlsplit(settings.redis_url)
        if url.hostname in ("127.0.0.1", "localhost"):
            port, password = port or url.port, url.password
    try:
        return serve_forever(port, password)
    except BrokerError as exc:
        raise UsageError(str(exc)) from exc


def with_saved_remote(settings: Settings) -> Settings:
    """Fill in the remote URL and key saved in the app's settings where neither the
    environment nor a running ``craftsync run`` names them; a saved key only ever goes to
    the address it was saved for, as in the app."""
    store = PreferenceStore(data_dir())
    choice = choose_remote(env_url=settings.remote_url, env_key=settings.remote_key, prefs=store.load(),
                           saved_key=store.api_key(), demo=None)
    return settings.with_overrides(remote_url=choice.url, remote_key=choice.key)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def build_parser() -> argparse.ArgumentParser:
    # --db goes before or after the command name: `craftsync --db X status` = `craftsync status --db X`.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", default=argparse.SUPPRESS, help="local SQLite file (default: CRAFTSYNC_DB or the user data dir)")
    parser = argparse.ArgumentParser(prog="craftsync", description="Offline-first sync for Craft Tools Hub.",
                                     parents=[common])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sync = commands.add_parser("sync", parents=[common], help="sync entities (none named = all, in dependency order)")
    sync.add_argument("entities", nargs="*", type=_entity, metavar="ENTITY", help=f"one or more of {', '.join(ENTITIES)}")
    sync.add_argument("--direction", choices=values(Direction), help="default: the direction saved in the app's settings (both)")
    sync.add_argument("--conflicts", choices=values(Policy),
                      help="conflict policy (default: the policy saved in the app's settings, remote)")
    mode = sync.add_mutually_exclusive_group()
    mode.add_argument("--wait", action="store_true", help="follow the run; exit 0 ok, 1 failed, 3 open conflicts")
    mode.add_argument("--inline", action="store_true", help="sync in this process, without broker or workers")
    sync.add_argument("--json", action="store_true", help="print one JSON summary")
    sync.set_defaults(handler=cmd_sync)

    imports = commands.add_parser("import", parents=[common], help="bulk import a CSV file; any number of workers push it")
    imports.add_argument("entity", type=_entity, metavar="ENTITY", help=f"one of {', '.join(ENTITIES)}")
    imports.add_argument("file", metavar="FILE.csv", help="UTF-8 CSV with a header row of field names")
    imports.add_argument("--wait", action="store_true", help="follow the import until it ends")
    imports.set_defaults(handler=cmd_import)

    worker = commands.add_parser("worker", parents=[common], help="run dramatiq workers for all sync queues")
    worker.add_argument("--processes", type=_count, default=1)
    worker.add_argument("--threads", type=_count, default=4)
    worker.set_defaults(handler=cmd_worker)

    status = commands.add_parser("status", parents=[common], help="connection, last runs, pending changes, conflicts")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=cmd_status)

    conflicts = commands.add_parser("conflicts", parents=[common], help="list or settle conflicts")
    conflicts.add_argument("action", nargs="?", choices=["list", "resolve"], default="list")
    conflicts.add_argument("id", nargs="?", type=int, help="conflict id (for resolve)")
    conflicts.add_argument("--use", choices=values(Resolution))
    conflicts.add_argument("--data", help="JSON object of field values (with --use merged)")
    conflicts.add_argument("--json", action="store_true")
    conflicts.set_defaults(handler=cmd_conflicts)

    run = commands.add_parser("run", parents=[common], help="the desktop app: broker, demo server, workers, UI and window")
    run.add_argument("--browser", action="store_true", help="open the UI in the default browser, not a window")
    run.set_defaults(handler=cmd_run)

    server = commands.add_parser("server", parents=[common], help="serve the reference remote API")
    server.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    server.add_argument("--port", type=_port, default=8000, help="port to listen on (default 8000)")
    server.add_argument("--demo", action="store_true", help="fill an empty database with demo records")
    server.add_argument("--certfile", metavar="FILE", help="serve HTTPS with this certificate (PEM, chain included)")
    server.add_argument("--keyfile", metavar="FILE", help="the certificate's private key (PEM; default: in --certfile)")
    server.set_defaults(handler=cmd_server)
    server_commands = server.add_subparsers(dest="server_command", metavar="SUBCOMMAND")
    adopt = server_commands.add_parser("adopt",
                                       help="make the existing database of DATABASE_URL syncable, keeping its rows")
    adopt.add_argument("--config", metavar="FILE", help="TOML mapping file (docs/adopt-example.toml); "
                       "none: the tables and columns have the contract's names")
    adopt.add_argument("--dry-run", action="store_true", help="print every change it would make, and make none")
    adopt.set_defaults(handler=cmd_server_adopt)

    broker = commands.add_parser("broker", parents=[common], help="run the embedded Redis-compatible broker in the foreground")
    broker.add_argument("--port", type=_port, default=None)
    broker.set_defaults(handler=cmd_broker)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``craftsync`` console script."""
    load_dotenv(os.path.join(os.getcwd(), ".env"))
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace, Settings], int] = args.handler
    try:
        settings = with_saved_remote(Settings.from_env())
        if getattr(args, "db", None):
            settings = settings.with_overrides(database=Path(args.db))
        return handler(args, settings)
    except UsageError as exc:
        _say(str(exc))
        return 1
    except SyncError as exc:  # the local store's, the broker's and the remote API's failures among them
        _say(exc.plain)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug: say so in one line; CRAFTSYNC_DEBUG=1 shows the traceback
        if os.environ.get("CRAFTSYNC_DEBUG"):
            raise
        _say(f"internal error ({type(exc).__name__}: {exc}); CRAFTSYNC_DEBUG=1 shows details")
        return 2


def _say(message: str) -> None:
    """A failure as the one line on stderr that the CLI promises, whatever the message held."""
    print(f"craftsync: {' '.join(message.split())}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
