"""The ``sandbox`` command: run the local Jobs API and storage until stopped.

The first line printed is the API base URL, the second where uploads go and
where their data is kept; nothing printed contains the API key. ``--fault``
(repeatable) sets faults before the first request, e.g.
``--fault status:upload:status=503,count=2``.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path

from glossi_watch.sandbox.app import Sandbox
from glossi_watch.sandbox.errors import InvalidFault, SandboxStartError
from glossi_watch.sandbox.fault_specs import FaultSpec, parse_fault_text

DEFAULT_PORT = 8765
DEFAULT_API_KEY = "sandbox-key"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the sandbox's options to ``parser``."""
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: %(default)s)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help="port of the API; 0 picks a free one (default: %(default)s)",
    )
    parser.add_argument(
        "--storage-port",
        type=int,
        default=0,
        help="port of the upload storage; 0 picks a free one (default: %(default)s)",
    )
    parser.add_argument(
        "--api-key",
        default=None,
        help=f"the key clients must send (default: $GLOSSI_API_KEY, else "
        f"{DEFAULT_API_KEY!r})",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="folder for uploaded objects (default: a temporary folder, removed "
        "on exit)",
    )
    parser.add_argument(
        "--url-ttl-seconds",
        type=_seconds,
        default=3600.0,
        help="lifetime of upload URLs (default: %(default)s)",
    )
    parser.add_argument(
        "--step-seconds",
        type=_seconds,
        default=0.5,
        help="how long each job status lasts after the confirm (default: %(default)s)",
    )
    parser.add_argument(
        "--fault",
        dest="faults",
        metavar="KIND:ROUTE[:KEY=VALUE,...]",
        type=_fault,
        action="append",
        default=[],
        help="misbehave on purpose, e.g. status:upload:status=503,count=2 or "
        "bandwidth:upload:bytes_per_second=200000; repeatable, the first "
        "matching fault applies (kinds: status, latency, reset, stall, "
        "bandwidth, html, url_ttl, job_fails, job_hangs)",
    )


def _seconds(text: str) -> float:
    """Parse a non-negative number of seconds for argparse."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds >= 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds >= 0")
    return seconds


def _fault(text: str) -> FaultSpec:
    """Parse one ``--fault`` for argparse."""
    try:
        return parse_fault_text(text)
    except InvalidFault as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from exc


def run(args: argparse.Namespace) -> int:
    """Serve the sandbox until SIGINT or SIGTERM; return the exit status.

    Must be called from the main thread, which owns signal handling.
    """
    api_key = args.api_key or os.environ.get("GLOSSI_API_KEY") or DEFAULT_API_KEY
    if args.data_dir is None:
        with tempfile.TemporaryDirectory(prefix="glossi-sandbox-") as temporary:
            return _run_in(args, api_key, Path(temporary))
    return _run_in(args, api_key, args.data_dir)


def _run_in(args: argparse.Namespace, api_key: str, data_dir: Path) -> int:
    sandbox = Sandbox(
        api_key=api_key,
        data_dir=data_dir,
        host=args.host,
        port=args.port,
        storage_port=args.storage_port,
        url_ttl_seconds=args.url_ttl_seconds,
        step_seconds=args.step_seconds,
        faults=args.faults,
    )

    stop = threading.Event()
    previous = {
        signum: signal.signal(signum, lambda signum, frame: stop.set())
        for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        return _serve(sandbox, data_dir, stop)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _serve(sandbox: Sandbox, data_dir: Path, stop: threading.Event) -> int:
    try:
        sandbox.start()
    except SandboxStartError as exc:
        print(f"glossi-watch sandbox: {exc}", file=sys.stderr)
        return 1

    try:
        print(sandbox.api_base_url, flush=True)
        print(f"Uploads go to {sandbox.storage_url}; data in {data_dir}", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        sandbox.close()
    return 0
