"""Idle CPU of the daemon in polling mode, with an empty and a huge done/.

Polling mode walks only the hot folder, never done/, so the idle cost should
not grow with the archive. This starts the sandbox and the daemon as real
processes, lets the daemon idle for a while with an empty done/, then with
``--done-files`` files in done/, and prints the CPU share of the daemon
process (user + system time from /proc) for each.

    python bench/idle_cpu.py [--seconds 30] [--done-files 20000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.harness import Daemon, SandboxProcess, wait_for, write_config  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def measure(daemon: Daemon, seconds: float) -> float:
    assert daemon.process is not None
    pid = daemon.process.pid
    start_cpu, start = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(pid) - start_cpu) / (time.monotonic() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--done-files", type=int, default=20_000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="glossi-bench-") as work:
        root = Path(work)
        sandbox = SandboxProcess.start(root / "sandbox")
        try:
            results = {}
            for label, count in (("empty done/", 0), ("full done/", args.done_files)):
                case = root / label.split()[0]
                case.mkdir()
                config = write_config(
                    case,
                    sandbox,
                    folder={"watch_mode": "polling", "poll_interval_seconds": 1.0},
                )
                done = case / "hot" / "done"
                done.mkdir(parents=True)
                for index in range(count):
                    (done / f"model-{index:05d}.glb").write_bytes(b"glTF")
                daemon = Daemon(config, case / "daemon.log").start()
                wait_for(lambda d=daemon: "watch_started" in d.log_text(), timeout=60)
                time.sleep(2.0)  # Let start-up settle before measuring.
                results[label] = measure(daemon, args.seconds)
                daemon.stop()
            for label, share in results.items():
                print(f"{label:12s} idle CPU {100 * share:6.2f} % of one core")
        finally:
            sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
