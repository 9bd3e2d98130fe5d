"""The ``glossi-watch`` command line: a thin layer over the validated config.

Each subcommand is one short function whose docstring is its help text.
Errors reach the user as one line on stderr and an exit status: 0 success,
1 the command ran but found a problem, 2 bad configuration or usage, 3 the
state store failed.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

from glossi_watch import __version__
from glossi_watch.config import load_config
from glossi_watch.errors import ConfigError, GlossiWatchError, StoreError
from glossi_watch.logs import configure_logging

EXIT_OK = 0
EXIT_PROBLEM = 1
EXIT_CONFIG = 2
EXIT_STORE = 3


def cmd_run(args: argparse.Namespace) -> int:
    """Watch the configured hot folders and upload what lands in them.

    Runs in the foreground until SIGTERM or SIGINT (as systemd and launchd
    expect); logs go to stdout, JSON when stdout is not a terminal.
    """
    from glossi_watch.daemon import Service

    config = load_config(args.config)
    configure_logging(args.log_level or config.log_level)
    service = Service(config)
    _on_stop_signals(service.request_stop)
    signal.signal(signal.SIGHUP, lambda signum, frame: service.request_reload())
    service.run()
    main_thread = threading.main_thread()
    if any(t is not main_thread and not t.daemon for t in threading.enumerate()):
        # A worker is stuck in a network call past the shutdown grace. Every
        # step is already committed, so leaving now loses nothing: the next
        # start resumes it. Waiting could outlast the service manager's stop.
        sys.stdout.flush()
        os._exit(EXIT_OK)
    return EXIT_OK


def cmd_sandbox(args: argparse.Namespace) -> int:
    """Serve a local stand-in of the Glossi API and its upload storage.

    For demos and tests: it listens on 127.0.0.1 and prints the API base URL
    as its first line.
    """
    from glossi_watch.sandbox.command import run

    return run(args)


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the whole pipeline once against a built-in sandbox, then exit.

    Starts the sandbox, creates a hot folder, drops a few models (and one
    file that is not a model), runs the daemon until every file has landed in
    done/ or failed/, and prints the result.
    """
    from glossi_watch.demo import run_demo

    return run_demo(workdir=args.workdir, timeout_seconds=args.timeout)


def cmd_status(args: argparse.Namespace) -> int:
    """Show what the daemon is doing, from its state store (safe while it runs)."""
    from glossi_watch.status import print_status

    config = load_config(args.config)
    return print_status(config, as_json=args.json)


def _on_stop_signals(stop: Callable[[], None]) -> None:
    def handle(signum: int, frame: FrameType | None) -> None:
        stop()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="glossi-watch",
        description="Hot-folder uploader for the Glossi Jobs API.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str, handler: Callable[[argparse.Namespace], int]
    ) -> argparse.ArgumentParser:
        doc = handler.__doc__ or ""
        sub = commands.add_parser(
            name,
            help=doc.splitlines()[0],
            description=doc,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.set_defaults(handler=handler)
        return sub

    run = add("run", cmd_run)
    run.add_argument("--config", required=True, type=Path, help="configuration file")
    run.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        help="overrides log_level from the configuration",
    )

    sandbox = add("sandbox", cmd_sandbox)
    from glossi_watch.sandbox.command import add_arguments

    add_arguments(sandbox)

    demo = add("demo", cmd_demo)
    demo.add_argument(
        "--workdir", type=Path, help="where to build the demo (default: a new temp dir)"
    )
    demo.add_argument(
        "--timeout", type=float, default=120.0, help="give up after this many seconds"
    )

    status = add("status", cmd_status)
    status.add_argument("--config", required=True, type=Path, help="configuration file")
    status.add_argument("--json", action="store_true", help="print JSON for scripts")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: int = args.handler(args)
        return result
    except ConfigError as exc:
        print(f"glossi-watch: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except StoreError as exc:
        print(f"glossi-watch: state store error: {exc}", file=sys.stderr)
        return EXIT_STORE
    except GlossiWatchError as exc:
        print(f"glossi-watch: {exc}", file=sys.stderr)
        return EXIT_PROBLEM


if __name__ == "__main__":
    sys.exit(main())
