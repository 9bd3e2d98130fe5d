"""Upload speed against a link limit, and the daemon's memory, by file size.

Starts the sandbox with a bandwidth limit on uploads (the "link") and the
daemon as real processes, drops one synthetic GLB of each size, and reports
for each: the upload rate as a share of the limit (from the daemon's
upload_finished event) and the daemon's peak resident memory (VmHWM), which
should stay flat whatever the file size.

    python bench/upload_throughput.py [--limit-mb 20] [--sizes-mb 10,100,1000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from glossi_watch.glb import write_synthetic_glb  # noqa: E402
from tests.harness import Daemon, SandboxProcess, wait_for, write_config  # noqa: E402

MB = 1024 * 1024


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def upload_seconds(log: str, name: str) -> float:
    for line in log.splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            if event.get("event") == "upload_finished" and event.get("file") == name:
                return float(event["seconds"])
    raise RuntimeError(f"no upload_finished for {name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit-mb", type=float, default=20.0)
    parser.add_argument("--sizes-mb", default="10,100,1000")
    args = parser.parse_args()
    limit = int(args.limit_mb * MB)
    sizes = [int(float(size) * MB) // 4 * 4 for size in args.sizes_mb.split(",")]

    with tempfile.TemporaryDirectory(prefix="glossi-bench-") as work:
        root = Path(work)
        fault = f"bandwidth:upload:bytes_per_second={limit}"
        sandbox = SandboxProcess.start(root / "sandbox", extra=["--fault", fault])
        try:
            print(f"link limit {limit / MB:.1f} MiB/s")
            for size in sizes:
                case = root / f"case-{size}"
                case.mkdir()
                config = write_config(case, sandbox)
                daemon = Daemon(config, case / "daemon.log").start()
                assert daemon.process is not None
                name = f"model-{size // MB}mb.glb"
                staging = case / name
                write_synthetic_glb(staging, size, seed=size % 1000)
                staging.rename(case / "hot" / name)
                done = case / "hot" / "done" / f"{name}.json"
                wait_for(done.exists, timeout=size / limit * 3 + 120, interval=0.5)
                rss = peak_rss_mb(daemon.process.pid)
                daemon.stop()
                seconds = upload_seconds(daemon.log_text(), name)
                rate = size / seconds
                print(
                    f"{size / MB:8.0f} MiB  {rate / MB:6.2f} MiB/s "
                    f"({100 * rate / limit:5.1f} % of the link)  "
                    f"peak RSS {rss:6.1f} MiB"
                )
        finally:
            sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
