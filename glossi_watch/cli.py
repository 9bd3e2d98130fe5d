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

    config = load_config(args.config, require_key=False)
    return print_status(config, as_json=args.json)


def cmd_install_service(args: argparse.Namespace) -> int:
    """Write the systemd unit (or launchd plist) that runs this installation.

    The unit runs this glossi-watch with the absolute configuration path as
    an unprivileged user, hardened, with write access only to the folders and
    state database the configuration names. It goes to /etc/systemd/system
    (root needed), or /Library/LaunchDaemons with --launchd (the default on
    macOS); --print shows it instead. The commands that enable it follow.
    """
    from glossi_watch.service_install import ServiceRequest, install_service

    request = ServiceRequest(
        config_path=args.config,
        user=args.user,
        launchd=args.launchd,
        print_only=args.print,
        output_dir=args.output,
        instance=args.instance,
    )
    return install_service(request)


def cmd_init(args: argparse.Namespace) -> int:
    """Write a new configuration file, asking for what the options leave out.

    Questions are asked only when stdin is a terminal; otherwise defaults are
    used and a missing --folder is an error. The file is written with mode
    0600 and never replaces an existing one unless --force is given.
    """
    from glossi_watch.setup_wizard import run_init

    return run_init(args)


def cmd_check(args: argparse.Namespace) -> int:
    """Check that an installation is ready to go live, one line per finding.

    Each line starts with ok, warn or FAIL: the configuration, each folder
    (exists, writable, its file system, done/ and failed/), the state
    database, inotify limits, the API key's file and whether the API accepts
    the key. Exit status 0 when nothing FAILs, 1 otherwise.
    """
    from glossi_watch.doctor import run_checks

    return run_checks(args.config)


def cmd_retry(args: argparse.Namespace) -> int:
    """Put models from failed/ back into their hot folder to be tried again.

    Select them by name (as stored in failed/), by --reason CODE (the
    sidecar's reason, such as too_large), or --all. Each model goes back
    under the name it was dropped under when that is free (never replacing a
    file), and its sidecar is removed; the daemon sees a new drop.
    """
    from glossi_watch.requeue import run_retry

    config = load_config(args.config)
    return run_retry(config, names=args.names, reason=args.reason, everything=args.all)


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

    install = add("install-service", cmd_install_service)
    from glossi_watch.service_files import DEFAULT_CONFIG, DEFAULT_USER

    install.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help="configuration file (default: %(default)s)",
    )
    install.add_argument(
        "--user",
        default=DEFAULT_USER,
        help="the unprivileged account to run as (default: %(default)s)",
    )
    install.add_argument(
        "--launchd",
        action="store_true",
        default=sys.platform == "darwin",
        help="write a launchd plist instead of a systemd unit",
    )
    install.add_argument(
        "--print", action="store_true", help="print the files instead of writing"
    )
    install.add_argument(
        "--output", type=Path, metavar="DIR", help="write the files into DIR instead"
    )
    install.add_argument(
        "--instance",
        metavar="NAME",
        help="run it as glossi-watch@NAME, from the template unit glossi-watch@",
    )

    init = add("init", cmd_init)
    from glossi_watch.setup_wizard import add_arguments as add_init_arguments

    add_init_arguments(init)

    check = add("check", cmd_check)
    check.add_argument("--config", required=True, type=Path, help="configuration file")

    retry = add("retry", cmd_retry)
    retry.add_argument("--config", required=True, type=Path, help="configuration file")
    retry.add_argument("names", nargs="*", metavar="NAME", help="a file in failed/")
    chosen = retry.add_mutually_exclusive_group()
    chosen.add_argument("--all", action="store_true", help="every file in failed/")
    chosen.add_argument("--reason", metavar="CODE", help="files that failed with CODE")
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
    except BrokenPipeError:
        # The reader went away (``status | head``): not an error to report.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_PROBLEM


if __name__ == "__main__":
    sys.exit(main())
