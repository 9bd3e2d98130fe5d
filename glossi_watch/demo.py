"""``glossi-watch demo``: the whole pipeline once, on this machine alone.

The demo needs nothing but the installed package: its models are generated
by :func:`glossi_watch.glb.demo_models`, the API is the built-in sandbox on
127.0.0.1, and everything it writes goes under one work folder.
"""

from __future__ import annotations

import json
import secrets
import tempfile
import threading
import time
from pathlib import Path

import tomli_w

from glossi_watch.config import load_config
from glossi_watch.daemon import Service
from glossi_watch.glb import demo_models
from glossi_watch.logs import configure_logging
from glossi_watch.sandbox import Sandbox

NOT_A_MODEL = b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>\n"


def write_demo_config(workdir: Path, base_url: str, api_key: str) -> Path:
    """A configuration for one hot folder under ``workdir``, tuned to be quick."""
    key_file = workdir / "api-key"
    key_file.write_text(api_key + "\n")
    key_file.chmod(0o600)
    document = {
        "state_db": str(workdir / "state" / "glossi-watch.db"),
        "scan_interval_seconds": 5,
        "api": {
            "base_url": base_url,
            "api_key_file": str(key_file),
            "poll_interval_seconds": 0.3,
            "max_poll_interval_seconds": 1.0,
        },
        "folders": [
            {
                "path": str(workdir / "hot"),
                "template_id": "demo-template",
                "create_projects": True,
                "render_settings": {"renderBookmarks": True, "imageQuality": 1},
                "debounce_seconds": 1.0,
                "settle_seconds": 0.5,
            }
        ],
    }
    path = workdir / "glossi-watch.toml"
    path.write_text(tomli_w.dumps(document))
    path.chmod(0o600)
    return path


def run_demo(*, workdir: Path | None = None, timeout_seconds: float = 120.0) -> int:
    """Run the demo; 0 when every dropped file landed where it should."""
    workdir = (workdir or Path(tempfile.mkdtemp(prefix="glossi-demo-"))).absolute()
    hot = workdir / "hot"
    hot.mkdir(parents=True, exist_ok=True)
    api_key = "glsi_demo_" + secrets.token_hex(8)
    configure_logging("info")

    with Sandbox(
        api_key=api_key, data_dir=workdir / "sandbox", step_seconds=0.3
    ) as sandbox:
        config = load_config(write_demo_config(workdir, sandbox.api_base_url, api_key))
        service = Service(config)
        thread = threading.Thread(target=service.run, name="glossi-demo-daemon")
        thread.start()
        try:
            expected = _drop_files(hot)
            landed = _wait_for_sidecars(hot, len(expected), timeout_seconds)
        finally:
            service.request_stop()
            thread.join()

    print()
    print(f"Demo folder: {workdir}")
    _print_tree(hot)
    sidecars = sorted((hot / "done").glob("*.json"))
    if sidecars:
        print(f"\n{sidecars[0].relative_to(workdir)}:")
        print(sidecars[0].read_text())

    outcome = _check(hot, expected)
    print(outcome if landed else f"Timed out after {timeout_seconds:.0f} s: {outcome}")
    return 0 if landed and outcome.startswith("OK") else 1


def _drop_files(hot: Path) -> dict[str, str]:
    """Drop the demo models and one impostor; the expected outcome by name."""
    expected = {}
    for name, data in demo_models().items():
        (hot / name).write_bytes(data)
        expected[name] = "done"
    (hot / "broken.glb").write_bytes(NOT_A_MODEL)
    expected["broken.glb"] = "failed"
    return expected


def _wait_for_sidecars(hot: Path, count: int, timeout_seconds: float) -> bool:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        found = list(hot.glob("done/*.json")) + list(hot.glob("failed/*.json"))
        if len(found) >= count:
            return True
        time.sleep(0.2)
    return False


def _print_tree(root: Path) -> None:
    print(f"{root.name}/")
    for path in sorted(root.rglob("*")):
        depth = len(path.relative_to(root).parts)
        suffix = "/" if path.is_dir() else f"  ({path.stat().st_size} bytes)"
        print("  " * depth + path.name + suffix)


def _check(hot: Path, expected: dict[str, str]) -> str:
    problems = []
    for name, outcome in expected.items():
        sidecar = hot / outcome / f"{name}.json"
        if not (hot / outcome / name).is_file() or not sidecar.is_file():
            problems.append(f"{name} is not in {outcome}/")
        elif json.loads(sidecar.read_text())["status"] != outcome:
            problems.append(f"{name}'s sidecar does not say {outcome}")
        if (hot / name).exists():
            problems.append(f"{name} is still in the hot folder")
    if problems:
        return "PROBLEM: " + "; ".join(problems)
    return f"OK: {len(expected)} files landed where they should."
