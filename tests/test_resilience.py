"""The network and the API misbehave; no file is lost or wrongly failed.

Each test switches on a fault in the real sandbox process, drops real
models, and checks where they end up, how many attempts the daemon made
(from the sandbox's request log), and that exactly one job was confirmed.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from glossi_watch.glb import write_synthetic_glb
from tests.harness import Daemon, SandboxProcess, wait_for, write_config

MB = 1024 * 1024


def start(
    tmp_path: Path,
    sandbox: SandboxProcess,
    *,
    folder: dict[str, Any] | None = None,
    api: dict[str, Any] | None = None,
) -> Daemon:
    config = write_config(tmp_path, sandbox, folder=folder, api=api)
    daemon = Daemon(config, tmp_path / "daemon.log").start()
    wait_for(lambda: "watch_started" in daemon.log_text(), timeout=60)
    return daemon


def filed(hot: Path, outcome: str, name: str) -> dict[str, Any]:
    wait_for(lambda: (hot / outcome / f"{name}.json").exists(), timeout=120)
    document: dict[str, Any] = json.loads((hot / outcome / f"{name}.json").read_text())
    return document


def confirmed_jobs(sandbox: SandboxProcess) -> list[dict[str, Any]]:
    return [job for job in sandbox.jobs() if job["confirmCount"] > 0]


def creates(sandbox: SandboxProcess) -> list[dict[str, Any]]:
    return [
        r
        for r in sandbox.requests_to("/api/v1/jobs", "POST")
        if r["path"] == "/api/v1/jobs"
    ]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def retries_logged(daemon: Daemon) -> list[dict[str, Any]]:
    events = [
        json.loads(line)
        for line in daemon.log_text().splitlines()
        if line.startswith("{")
    ]
    return [event for event in events if event.get("event") == "step_retry"]


class TestTransientAnswers:
    @pytest.mark.parametrize("status", [500, 502, 503, 504])
    def test_a_server_error_on_create_costs_two_retries_no_more(
        self, tmp_path: Path, sandbox: SandboxProcess, samples: Path, status: int
    ) -> None:
        sandbox.add_fault("status", "create_job", status=status, count=2)
        daemon = start(tmp_path, sandbox)
        hot = tmp_path / "hot"

        shutil.copyfile(samples / "Box.glb", hot / "Box.glb")
        sidecar = filed(hot, "done", "Box.glb")
        assert daemon.stop() == 0

        assert [r["status"] for r in creates(sandbox)] == [status, status, 201]
        assert len(confirmed_jobs(sandbox)) == 1
        retries = [a for a in sidecar["attempts"] if a["outcome"] == "retry"]
        assert len(retries) == 2 and str(status) in retries[0]["detail"]

    @pytest.mark.parametrize("form", ["seconds", "date"])
    def test_429_waits_as_long_as_retry_after_says(
        self, tmp_path: Path, sandbox: SandboxProcess, samples: Path, form: str
    ) -> None:
        option = (
            {"retry_after": "4"}
            if form == "seconds"
            else {"retry_after_date_seconds": 4}
        )
        sandbox.add_fault("status", "confirm_uploads", status=429, count=1, **option)
        daemon = start(tmp_path, sandbox)

        shutil.copyfile(samples / "Box.glb", tmp_path / "hot" / "Box.glb")
        filed(tmp_path / "hot", "done", "Box.glb")
        assert daemon.stop() == 0

        confirms = sandbox.requests_to("/confirm-uploads", "POST")
        assert [r["status"] for r in confirms] == [429, 200]
        (retry,) = retries_logged(daemon)
        assert retry["retry_in_seconds"] >= 2.5  # An HTTP date has 1 s steps.

    def test_slow_answers_and_html_bodies_are_waited_out(
        self, tmp_path: Path, sandbox: SandboxProcess, samples: Path
    ) -> None:
        sandbox.add_fault("html", "get_job", count=2)
        sandbox.add_fault("latency", "get_job", seconds=1.0, count=2)
        daemon = start(tmp_path, sandbox)

        shutil.copyfile(samples / "Box.glb", tmp_path / "hot" / "Box.glb")
        filed(tmp_path / "hot", "done", "Box.glb")
        assert daemon.stop() == 0

        faults = [r["fault"] for r in sandbox.requests_to("/api/v1/jobs/", "GET")]
        assert faults[:4] == ["html", "html", "latency", "latency"]
        assert len(confirmed_jobs(sandbox)) == 1


class TestUploads:
    def test_a_reset_midway_through_a_large_upload_is_sent_again_whole(
        self, tmp_path: Path, sandbox: SandboxProcess
    ) -> None:
        sandbox.add_fault("reset", "upload", after_bytes=5 * MB, count=1)
        daemon = start(tmp_path, sandbox)
        source = tmp_path / "large.glb"
        write_synthetic_glb(source, 20 * MB, seed=3)

        shutil.copyfile(source, tmp_path / "hot" / "large.glb")
        filed(tmp_path / "hot", "done", "large.glb")
        assert daemon.stop() == 0

        puts = sandbox.requests_to("/", "PUT")
        assert [(r["status"], r["fault"]) for r in puts] == [
            (None, "reset"),
            (200, None),
        ]
        (job,) = confirmed_jobs(sandbox)
        assert job["models"][0]["sha256"] == sha256(source)

    def test_a_stalled_upload_times_out_and_is_retried(
        self, tmp_path: Path, sandbox: SandboxProcess, samples: Path
    ) -> None:
        sandbox.add_fault("stall", "upload", seconds=30, after_bytes=100, count=1)
        daemon = start(tmp_path, sandbox, api={"read_timeout_seconds": 2})

        shutil.copyfile(samples / "Box.glb", tmp_path / "hot" / "Box.glb")
        filed(tmp_path / "hot", "done", "Box.glb")
        assert daemon.stop() == 0

        puts = sandbox.requests_to("/", "PUT")
        assert [r["fault"] for r in puts] == ["stall", None]

    def test_a_slow_link_is_not_cut_off_while_it_moves(
        self, tmp_path: Path, sandbox: SandboxProcess, samples: Path
    ) -> None:
        sandbox.add_fault("bandwidth", "upload", bytes_per_second=600_000)
        daemon = start(tmp_path, sandbox, api={"read_timeout_seconds": 2})

        shutil.copyfile(samples / "barrel.glb", tmp_path / "hot" / "barrel.glb")
        filed(tmp_path / "hot", "done", "barrel.glb")
        assert daemon.stop() == 0

        assert [r["status"] for r in sandbox.requests_to("/", "PUT")] == [200]

    def test_urls_that_outlive_the_transfer_split_the_batch(
        self, tmp_path: Path, sandbox: SandboxProcess
    ) -> None:
        sandbox.add_fault("url_ttl", seconds=6)
        sandbox.add_fault("bandwidth", "upload", bytes_per_second=1_000_000)
        daemon = start(tmp_path, sandbox, folder={"debounce_seconds": 2.0})
        staging = tmp_path / "staging"
        staging.mkdir()
        for seed in (1, 2, 3):
            write_synthetic_glb(staging / f"part{seed}.glb", 3 * MB, seed=seed)
            shutil.copyfile(
                staging / f"part{seed}.glb", tmp_path / "hot" / f"part{seed}.glb"
            )

        for seed in (1, 2, 3):
            filed(tmp_path / "hot", "done", f"part{seed}.glb")
        assert daemon.stop() == 0

        stored = {
            m["fileName"]: m["sha256"]
            for j in confirmed_jobs(sandbox)
            for m in j["models"]
        }
        assert stored == {p.name: sha256(p) for p in staging.iterdir()}
        assert all(
            job["confirmCount"] == 1 for job in sandbox.jobs() if job["confirmCount"]
        )
        assert "job_abandoned" in daemon.log_text()


class TestJobOutcomes:
    def test_a_failed_job_files_its_models_with_the_apis_error(
        self, tmp_path: Path, sandbox: SandboxProcess, samples: Path
    ) -> None:
        sandbox.add_fault(
            "job_fails", error="Processing failed: texture missing", count=1
        )
        daemon = start(tmp_path, sandbox)

        shutil.copyfile(samples / "Box.glb", tmp_path / "hot" / "Box.glb")
        sidecar = filed(tmp_path / "hot", "failed", "Box.glb")
        assert daemon.stop() == 0

        assert sidecar["reason"] == "job_failed"
        assert sidecar["job_status"] == "FAILED"
        assert "texture missing" in sidecar["message"]
        assert sidecar["job_id"]

    def test_a_job_that_never_finishes_times_out(
        self, tmp_path: Path, sandbox: SandboxProcess, samples: Path
    ) -> None:
        sandbox.add_fault("job_hangs", count=1)
        daemon = start(tmp_path, sandbox, folder={"job_timeout_seconds": 4})

        shutil.copyfile(samples / "Box.glb", tmp_path / "hot" / "Box.glb")
        sidecar = filed(tmp_path / "hot", "failed", "Box.glb")
        assert daemon.stop() == 0

        assert sidecar["reason"] == "job_timeout"
        assert "PROCESSING" in sidecar["message"]


class TestOutagesAndKeys:
    def test_an_outage_fails_nothing_and_recovers_soon(
        self, tmp_path: Path, sandbox: SandboxProcess, samples: Path
    ) -> None:
        sandbox.add_fault("status", "api", status=503)
        daemon = start(tmp_path, sandbox)
        hot = tmp_path / "hot"
        names = [f"model{index}.glb" for index in range(5)]
        for name in names:
            shutil.copyfile(samples / "BoxTextured.glb", hot / name)

        wait_for(lambda: len(creates(sandbox)) >= 3, timeout=60)
        time.sleep(8)
        during = len(creates(sandbox))
        recovered = time.monotonic()
        sandbox.clear_faults()
        for name in names:
            filed(hot, "done", name)
        assert daemon.stop() == 0

        assert not (hot / "failed").exists()
        assert during <= 12, f"{during} attempts: the daemon did not back off"
        assert time.monotonic() - recovered < 150
        assert len(confirmed_jobs(sandbox)) == 1

    def test_a_refused_key_pauses_until_a_good_key_is_in_place(
        self, tmp_path: Path, sandbox: SandboxProcess, samples: Path
    ) -> None:
        daemon = start(tmp_path, sandbox)
        key_file = tmp_path / "api-key"
        good_key = key_file.read_text()
        daemon.stop()
        key_file.write_text("glsi_wrong_key\n")
        daemon = Daemon(tmp_path / "glossi-watch.toml", tmp_path / "daemon.log").start()
        hot = tmp_path / "hot"

        shutil.copyfile(samples / "Box.glb", hot / "Box.glb")
        wait_for(lambda: "api_key_refused" in daemon.log_text(), timeout=60)
        assert (hot / "Box.glb").exists()
        key_file.write_text(good_key)
        filed(hot, "done", "Box.glb")
        assert daemon.stop() == 0

        log = daemon.log_text()
        assert "glsi_wrong_key" not in log and good_key.strip() not in log
        assert not (hot / "failed").exists()


def test_sigterm_during_an_upload_exits_quickly_and_resumes(
    tmp_path: Path, sandbox: SandboxProcess
) -> None:
    sandbox.add_fault("bandwidth", "upload", bytes_per_second=500_000)
    daemon = start(tmp_path, sandbox)
    source = tmp_path / "slow.glb"
    write_synthetic_glb(source, 8 * MB, seed=5)
    shutil.copyfile(source, tmp_path / "hot" / "slow.glb")
    wait_for(lambda: "upload_started" in daemon.log_text(), timeout=60)
    time.sleep(2)
    assert daemon.process is not None

    stopped = time.monotonic()
    daemon.process.send_signal(signal.SIGTERM)
    assert daemon.process.wait(timeout=30) == 0
    assert time.monotonic() - stopped < 10
    sandbox.clear_faults()
    daemon = Daemon(tmp_path / "glossi-watch.toml", tmp_path / "daemon.log").start()
    filed(tmp_path / "hot", "done", "slow.glb")
    assert daemon.stop() == 0

    (job,) = sandbox.jobs()
    assert job["confirmCount"] == 1 and job["models"][0]["sha256"] == sha256(source)
    assert re.search(r'"event": "daemon_stopped"', daemon.log_text())
