"""A dropped .glb becomes a Glossi job and lands in done/ or failed/.

The sandbox and the daemon run as real processes talking over 127.0.0.1; the
models are the real sample files.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from tests.harness import Daemon, SandboxProcess, wait_for, write_config

SAMPLE_NAMES = ("Box.glb", "BoxTextured.glb", "barrel.glb")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sidecars(directory: Path) -> dict[str, dict[str, object]]:
    return {
        path.name.removesuffix(".json"): json.loads(path.read_text())
        for path in directory.glob("*.json")
    }


def test_three_samples_land_in_done_as_one_job(
    tmp_path: Path, sandbox: SandboxProcess, samples: Path
) -> None:
    config = write_config(tmp_path, sandbox)
    daemon = Daemon(config, tmp_path / "daemon.log").start()
    hot = tmp_path / "hot"

    for name in SAMPLE_NAMES:
        shutil.copyfile(samples / name, hot / name)
    done = hot / "done"
    wait_for(lambda: len(sidecars(done)) == 3, timeout=90)
    assert daemon.stop() == 0

    found = sidecars(done)
    assert sorted(found) == sorted(SAMPLE_NAMES)
    job_ids = {sidecar["job_id"] for sidecar in found.values()}
    assert len(job_ids) == 1
    for name, sidecar in found.items():
        assert sidecar["status"] == "done"
        assert sidecar["sha256"] == sha256(samples / name)
        assert sidecar["size"] == (samples / name).stat().st_size
        assert sidecar["model_id"] and sidecar["project_id"]
        assert sidecar["batch_project_id"]
        assert sha256(done / name) == sha256(samples / name)
        assert not (hot / name).exists()

    (job,) = sandbox.jobs()
    assert job["jobId"] in job_ids and job["status"] == "COMPLETE"
    assert job["confirmCount"] == 1
    stored = {model["fileName"]: model["sha256"] for model in job["models"]}
    assert stored == {name: sha256(samples / name) for name in SAMPLE_NAMES}


def test_uploads_carry_length_and_never_the_key(
    tmp_path: Path, sandbox: SandboxProcess, samples: Path
) -> None:
    config = write_config(tmp_path, sandbox)
    daemon = Daemon(config, tmp_path / "daemon.log").start()
    for name in SAMPLE_NAMES:
        shutil.copyfile(samples / name, tmp_path / "hot" / name)
    wait_for(lambda: len(sidecars(tmp_path / "hot" / "done")) == 3, timeout=90)
    assert daemon.stop() == 0

    uploads = [r for r in sandbox.requests() if r["method"] == "PUT"]
    api_calls = [r for r in sandbox.requests() if r["path"].startswith("/api/")]
    assert len(uploads) == 3
    for request in uploads:
        headers = {name.lower() for name in request["headers"]}
        assert request["server"] == "storage"
        assert not request["hadApiKey"] and "x-api-key" not in headers
        assert "content-length" in headers
        assert "transfer-encoding" not in headers
    assert api_calls and all(request["hadApiKey"] for request in api_calls)
    log = daemon.log_text()
    assert sandbox.api_key not in log
    assert "X-Amz-" not in log


def test_an_html_page_named_glb_fails_and_the_rest_is_done(
    tmp_path: Path, sandbox: SandboxProcess, samples: Path
) -> None:
    config = write_config(tmp_path, sandbox)
    daemon = Daemon(config, tmp_path / "daemon.log").start()
    hot = tmp_path / "hot"

    (hot / "error-page.glb").write_bytes(
        b"<html><body>504 Gateway Timeout</body></html>"
    )
    shutil.copyfile(samples / "Box.glb", hot / "Box.glb")
    wait_for(lambda: (hot / "done" / "Box.glb.json").exists(), timeout=90)
    wait_for(lambda: (hot / "failed" / "error-page.glb.json").exists(), timeout=30)
    assert daemon.stop() == 0

    failed = json.loads((hot / "failed" / "error-page.glb.json").read_text())
    assert failed["status"] == "failed"
    assert failed["reason"] == "not_glb"
    assert "glTF" in failed["message"]
    assert failed["job_id"] is None
    assert (hot / "failed" / "error-page.glb").read_bytes().startswith(b"<html>")
    uploaded = {m["fileName"] for job in sandbox.jobs() for m in job["models"]}
    assert uploaded == {"Box.glb"}


def test_files_dropped_while_stopped_are_processed_at_start(
    tmp_path: Path, sandbox: SandboxProcess, samples: Path
) -> None:
    config = write_config(tmp_path, sandbox)
    hot = tmp_path / "hot"
    for name in SAMPLE_NAMES[:2]:
        shutil.copyfile(samples / name, hot / name)

    daemon = Daemon(config, tmp_path / "daemon.log").start()
    wait_for(lambda: len(sidecars(hot / "done")) == 2, timeout=90)
    assert daemon.stop() == 0

    assert len(sandbox.jobs()) == 1
    assert [p.name for p in hot.iterdir() if p.is_file()] == [".glossi-watch.lock"]


def test_a_second_daemon_on_the_same_folder_stands_back(
    tmp_path: Path, sandbox: SandboxProcess, samples: Path
) -> None:
    first_config = write_config(tmp_path, sandbox)
    second_dir = tmp_path / "second"
    second_dir.mkdir()
    (second_dir / "hot").symlink_to(tmp_path / "hot")  # Same folder, other store.
    second_config = write_config(second_dir, sandbox)
    first = Daemon(first_config, tmp_path / "first.log").start()
    wait_for(lambda: "watch_started" in first.log_text(), timeout=60)
    second = Daemon(second_config, tmp_path / "second.log").start()
    wait_for(lambda: "folder_in_use" in second.log_text(), timeout=60)

    shutil.copyfile(samples / "Box.glb", tmp_path / "hot" / "Box.glb")
    wait_for(lambda: (tmp_path / "hot" / "done" / "Box.glb.json").exists(), timeout=90)
    assert second.stop() == 0 and first.stop() == 0

    assert len(sandbox.jobs()) == 1
