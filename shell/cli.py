"""The ``craftsync`` command line.

Configuration comes from the environment and a ``.env`` file in the working directory;
flags override both. Every failure a user can cause or meet (bad input, a service that
cannot be reached) ends with one line on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from dotenv import load_dotenv


class UsageError(Exception):
    """Raised for a problem the user can fix; its message is the one line shown."""


def _port(value: str) -> int:
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number (1-65535)")
    return int(value)


def cmd_server(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from server.config import ServerSettings
    from server.serve import serve

    settings = ServerSettings.from_env()
    try:
        serve(settings, host=args.host, port=args.port)
    except SQLAlchemyError as exc:
        raise UsageError(f"cannot open the database ({type(exc).__name__}): {_first_line(exc)}") from exc
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from exc
    return 0


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="craftsync", description="Offline-first sync for Craft Tools Hub.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    server = commands.add_parser("server", help="serve the reference remote API")
    server.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    server.add_argument("--port", type=_port, default=8000, help="port to listen on (default 8000)")
    server.set_defaults(handler=cmd_server)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``craftsync`` console script."""
    load_dotenv(os.path.join(os.getcwd(), ".env"))
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except UsageError as exc:
        print(f"craftsync: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
