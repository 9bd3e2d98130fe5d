"""Real drops: half-written files, junk, odd names, links and special files.

The writers imitate what lands in a studio's shared folder; each test ends
with the files in done/ or failed/ as a user expects, and the sandbox showing
exactly the uploads that should have happened (none for junk and rejects).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import time
import unicodedata
from pathlib import Path

import pytest

from glossi_watch.glb import write_synthetic_glb
from tests.harness import Daemon, SandboxProcess, wait_for, write_config
from tests.writers import (
    MB,
    preallocate_then_fill,
    write_close_reopen_append,
    write_in_pieces,
    write_then_rename,
)

FAST = {"settle_seconds": 0.5, "debounce_seconds": 0.5}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def synthetic(tmp_path: Path, size: int, seed: int = 1) -> bytes:
    path = tmp_path / f"synthetic-{seed}.glb"
    write_synthetic_glb(path, size, seed=seed)
    data = path.read_bytes()
    path.unlink()
    return data


def uploads(sandbox: SandboxProcess) -> dict[str, str]:
    """File name → sha256 of every stored object, over all jobs."""
    return {
        model["fileName"]: model["sha256"]
        for job in sandbox.jobs()
        for model in job["models"]
        if model["sha256"]
    }


def sidecar(path: Path) -> dict[str, object]:
    return json.loads(path.with_name(path.name + ".json").read_text())


@pytest.fixture
def hot(tmp_path: Path, sandbox: SandboxProcess, request: pytest.FixtureRequest):
    """A running daemon on ``tmp_path/hot``; folder options from a marker."""
    marker = request.node.get_closest_marker("folder")
    options = {**FAST, **(marker.kwargs if marker else {})}
    config = write_config(tmp_path, sandbox, folder=options)
    daemon = Daemon(config, tmp_path / "daemon.log").start()
    wait_for(lambda: "watch_started" in daemon.log_text(), timeout=60)
    yield tmp_path / "hot"
    assert daemon.stop() == 0
    log = daemon.log_text()
    assert "Traceback" not in log
    assert sandbox.api_key not in log


class TestHalfWrittenFiles:
    def test_a_50_mb_file_written_in_1_mb_pieces(
        self, hot: Path, sandbox: SandboxProcess, tmp_path: Path
    ) -> None:
        data = synthetic(tmp_path, 50 * MB)

        write_in_pieces(hot / "big.glb", data, piece=MB, delay=0.08)

        wait_for(lambda: (hot / "done" / "big.glb.json").exists(), timeout=120)
        assert uploads(sandbox) == {"big.glb": sha256(data)}
        puts = [r for r in sandbox.requests() if r["method"] == "PUT"]
        assert len(puts) == 1

    def test_a_preallocated_file_filled_at_constant_size(
        self, hot: Path, sandbox: SandboxProcess, tmp_path: Path
    ) -> None:
        data = synthetic(tmp_path, 8 * MB)

        preallocate_then_fill(hot / "explorer.glb", data, piece=MB // 2, delay=0.2)

        wait_for(lambda: (hot / "done" / "explorer.glb.json").exists(), timeout=120)
        assert uploads(sandbox) == {"explorer.glb": sha256(data)}

    def test_a_preallocated_copy_that_stalls_past_the_settle_time(
        self, hot: Path, sandbox: SandboxProcess, tmp_path: Path
    ) -> None:
        data = synthetic(tmp_path, 8 * MB)

        preallocate_then_fill(
            hot / "vpn.glb", data, piece=MB, delay=0.05, stall_at=4 * MB, stall=3.0
        )

        wait_for(lambda: (hot / "done" / "vpn.glb.json").exists(), timeout=120)
        assert uploads(sandbox) == {"vpn.glb": sha256(data)}

    def test_a_plain_copy_that_stalls_halfway(
        self, hot: Path, sandbox: SandboxProcess, tmp_path: Path
    ) -> None:
        data = synthetic(tmp_path, 4 * MB)

        with (hot / "slow.glb").open("wb") as out:
            out.write(data[: 2 * MB])
            out.flush()
            wait_for(lambda: "file_detected" in (tmp_path / "daemon.log").read_text())
            time.sleep(3.0)
            out.write(data[2 * MB :])

        wait_for(lambda: (hot / "done" / "slow.glb.json").exists(), timeout=120)
        assert uploads(sandbox) == {"slow.glb": sha256(data)}

    def test_write_close_pause_reopen_and_append(
        self, hot: Path, sandbox: SandboxProcess, samples: Path
    ) -> None:
        data = (samples / "barrel.glb").read_bytes()

        write_close_reopen_append(
            hot / "barrel.glb", data, split=len(data) // 3, pause=3.0
        )

        wait_for(lambda: (hot / "done" / "barrel.glb.json").exists(), timeout=120)
        assert uploads(sandbox) == {"barrel.glb": sha256(data)}


TEMPORARY_NAMES = [
    ".model.glb.Xy12Ab",  # rsync
    "model.glb.part",  # Firefox, curl -o, many others
    "model.glb.partial",
    "model.glb.filepart",  # WinSCP
    "model.glb.crdownload",  # Chrome
    "model.glb.tmp",
    "model.glb.download",  # Safari
    ".syncthing.model.glb.tmp",
    "~$model.glb",
]


class TestTemporaryNames:
    @pytest.mark.parametrize("temp_name", TEMPORARY_NAMES)
    def test_a_temporary_name_then_a_rename_is_uploaded_once_as_final(
        self, hot: Path, sandbox: SandboxProcess, samples: Path, temp_name: str
    ) -> None:
        data = (samples / "BoxTextured.glb").read_bytes()

        write_then_rename(hot, temp_name, "model.glb", data)

        wait_for(lambda: (hot / "done" / "model.glb.json").exists(), timeout=90)
        assert uploads(sandbox) == {"model.glb": sha256(data)}
        assert len(sandbox.jobs()) == 1

    def test_apple_double_junk_beside_a_model_is_left_alone(
        self, hot: Path, sandbox: SandboxProcess, samples: Path
    ) -> None:
        (hot / "._chair.glb").write_bytes(b"\x00\x05\x16\x07" + bytes(4092))
        (hot / ".DS_Store").write_bytes(b"junk")
        shutil.copyfile(samples / "Box.glb", hot / "chair.glb")

        wait_for(lambda: (hot / "done" / "chair.glb.json").exists(), timeout=90)
        assert uploads(sandbox) == {
            "chair.glb": sha256((samples / "Box.glb").read_bytes())
        }
        assert (hot / "._chair.glb").exists() and (hot / ".DS_Store").exists()
        assert not (hot / "failed").exists()


REJECTS = {
    "empty.glb": (b"", "empty_file"),
    "error-page.glb": (b"<!DOCTYPE html><html><body>404</body></html>", "not_glb"),
    "lfs-pointer.glb": (
        b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 12\n",
        "not_glb",
    ),
    "version1.glb": (
        struct.pack("<4sII", b"glTF", 1, 20) + bytes(8),
        "unsupported_version",
    ),
}


class TestRejects:
    @pytest.mark.folder(incomplete_after_seconds=3, max_file_bytes=30000)
    def test_each_reject_kind_has_its_reason_and_nothing_is_sent(
        self, hot: Path, sandbox: SandboxProcess, samples: Path
    ) -> None:
        box = (samples / "Box.glb").read_bytes()
        cases = dict(REJECTS)
        cases["truncated.glb"] = (box[:700], "incomplete")
        cases["trailing-junk.glb"] = (box + b"JUNK", "inconsistent_chunks")
        cases["too-big.glb"] = ((samples / "barrel.glb").read_bytes(), "too_large")

        for name, (data, _) in cases.items():
            (hot / name).write_bytes(data)
        shutil.copyfile(samples / "Box.glb", hot / "good.glb")

        for name, (data, reason) in cases.items():
            wait_for(lambda n=name: (hot / "failed" / f"{n}.json").exists(), timeout=90)
            found = sidecar(hot / "failed" / name)
            assert (found["status"], found["reason"]) == ("failed", reason), name
            assert found["message"]
            assert (hot / "failed" / name).read_bytes() == data
        wait_for(lambda: (hot / "done" / "good.glb.json").exists(), timeout=90)
        assert set(uploads(sandbox)) == {"good.glb"}

    def test_a_symlink_to_a_file_outside_is_refused_unread(
        self, hot: Path, sandbox: SandboxProcess, samples: Path, tmp_path: Path
    ) -> None:
        outside = tmp_path / "secret.glb"
        shutil.copyfile(samples / "Box.glb", outside)
        os.symlink(outside, hot / "link.glb")
        shutil.copyfile(samples / "BoxTextured.glb", hot / "real.glb")

        wait_for(lambda: (hot / "failed" / "link.glb.json").exists(), timeout=90)
        wait_for(lambda: (hot / "done" / "real.glb.json").exists(), timeout=90)
        assert sidecar(hot / "failed" / "link.glb")["reason"] == "not_regular_file"
        assert (hot / "failed" / "link.glb").is_symlink()
        assert outside.read_bytes() == (samples / "Box.glb").read_bytes()
        assert set(uploads(sandbox)) == {"real.glb"}

    def test_a_hard_link_and_a_fifo_are_refused_without_blocking(
        self, hot: Path, sandbox: SandboxProcess, samples: Path, tmp_path: Path
    ) -> None:
        outside = tmp_path / "other-name.glb"
        shutil.copyfile(samples / "Box.glb", outside)
        os.link(outside, hot / "hard.glb")
        os.mkfifo(hot / "pipe.glb")
        shutil.copyfile(samples / "BoxTextured.glb", hot / "real.glb")

        for name in ("hard.glb", "pipe.glb"):
            wait_for(lambda n=name: (hot / "failed" / f"{n}.json").exists(), timeout=90)
            assert sidecar(hot / "failed" / name)["reason"] == "not_regular_file"
        wait_for(lambda: (hot / "done" / "real.glb.json").exists(), timeout=90)
        assert set(uploads(sandbox)) == {"real.glb"}
        assert outside.exists()


ODD_NAMES = [
    unicodedata.normalize("NFC", "café.glb"),
    unicodedata.normalize("NFD", "café.glb"),
    "my model v2.glb",
    "a+b=c.glb",
    "50% off.glb",
    "#1 chair.glb",
    'it\'s "quoted".glb',
    "🚀 rocket.glb",
    "-leading-dash.glb",
    "UPPER.GLB",
]


class TestNames:
    def test_odd_names_keep_their_exact_bytes(
        self, hot: Path, sandbox: SandboxProcess, samples: Path
    ) -> None:
        data = (samples / "Box.glb").read_bytes()
        for name in ODD_NAMES:
            (hot / name).write_bytes(data)

        wait_for(
            lambda: len(list((hot / "done").glob("*.json"))) == len(ODD_NAMES),
            timeout=90,
        )
        stored = {os.fsencode(name) for name in os.listdir(hot / "done")}
        for name in ODD_NAMES:
            assert os.fsencode(name) in stored
            assert sidecar(hot / "done" / name)["file"] == name
        assert set(uploads(sandbox)) == set(ODD_NAMES)

    def test_a_255_byte_name_is_filed_under_a_name_its_sidecar_fits(
        self, hot: Path, samples: Path
    ) -> None:
        name = "x" * 251 + ".glb"
        shutil.copyfile(samples / "Box.glb", hot / name)

        wait_for(lambda: list((hot / "done").glob("*.json")), timeout=90)
        (found,) = (hot / "done").glob("*.json")
        document = json.loads(found.read_text())
        assert document["file"] == name
        stored = hot / "done" / document["stored_as"]
        assert stored.read_bytes() == (samples / "Box.glb").read_bytes()
        assert not (hot / name).exists()

    @pytest.mark.folder(subfolders="recursive")
    def test_the_same_name_in_two_subfolders_keeps_both_in_place(
        self, hot: Path, sandbox: SandboxProcess, samples: Path
    ) -> None:
        for folder, sample in (("alice", "Box.glb"), ("bob", "BoxTextured.glb")):
            (hot / folder).mkdir()
            shutil.copyfile(samples / sample, hot / folder / "chair.glb")

        for folder in ("alice", "bob"):
            wait_for(
                lambda f=folder: (hot / "done" / f / "chair.glb.json").exists(),
                timeout=90,
            )
        assert (hot / "done" / "alice" / "chair.glb").read_bytes() == (
            samples / "Box.glb"
        ).read_bytes()
        assert sidecar(hot / "done" / "bob" / "chair.glb")["file"] == "bob/chair.glb"

    def test_subfolders_are_ignored_by_default(
        self, hot: Path, sandbox: SandboxProcess, samples: Path
    ) -> None:
        (hot / "wip").mkdir()
        shutil.copyfile(samples / "Box.glb", hot / "wip" / "draft.glb")
        shutil.copyfile(samples / "Box.glb", hot / "top.glb")

        wait_for(lambda: (hot / "done" / "top.glb.json").exists(), timeout=90)
        assert (hot / "wip" / "draft.glb").exists()
        assert set(uploads(sandbox)) == {"top.glb"}


class TestShares:
    @pytest.mark.folder(watch_mode="polling", poll_interval_seconds=0.5)
    def test_polling_finds_files_written_behind_the_watchers_back(
        self, hot: Path, sandbox: SandboxProcess, samples: Path, tmp_path: Path
    ) -> None:
        log = (tmp_path / "daemon.log").read_text()
        assert '"mode": "polling"' in log

        shutil.copyfile(samples / "Box.glb", hot / "remote.glb")

        wait_for(lambda: (hot / "done" / "remote.glb.json").exists(), timeout=90)

    def test_a_folder_that_disappears_and_comes_back_is_scanned_again(
        self, hot: Path, sandbox: SandboxProcess, samples: Path, tmp_path: Path
    ) -> None:
        away = tmp_path / "hot-unmounted"
        log = tmp_path / "daemon.log"

        os.rename(hot, away)
        wait_for(lambda: "folder_unavailable" in log.read_text(), timeout=60)
        shutil.copyfile(samples / "Box.glb", away / "while-away.glb")
        os.rename(away, hot)

        wait_for(lambda: "folder_available" in log.read_text(), timeout=60)
        wait_for(lambda: (hot / "done" / "while-away.glb.json").exists(), timeout=90)


def test_done_and_sidecars_are_group_readable_whatever_the_umask(
    tmp_path: Path, sandbox: SandboxProcess, samples: Path
) -> None:
    config = write_config(tmp_path, sandbox, folder=FAST)
    daemon = Daemon(config, tmp_path / "daemon.log", umask=0o077).start()
    hot = tmp_path / "hot"

    shutil.copyfile(samples / "Box.glb", hot / "Box.glb")
    wait_for(lambda: (hot / "done" / "Box.glb.json").exists(), timeout=90)
    assert daemon.stop() == 0

    assert (hot / "done").stat().st_mode & 0o777 == 0o775
    assert (hot / "done" / "Box.glb.json").stat().st_mode & 0o777 == 0o664


def test_a_file_changed_after_batching_leaves_the_batch_and_settles_again(
    tmp_path: Path, sandbox: SandboxProcess, samples: Path
) -> None:
    sandbox.add_fault("bandwidth", "upload", bytes_per_second=1_000_000)
    config = write_config(tmp_path, sandbox, folder={**FAST, "debounce_seconds": 2.0})
    daemon = Daemon(config, tmp_path / "daemon.log").start()
    hot = tmp_path / "hot"
    big = synthetic(tmp_path, 6 * MB, seed=4)
    (hot / "a-big.glb").write_bytes(big)
    shutil.copyfile(samples / "Box.glb", hot / "b-small.glb")
    wait_for(lambda: "upload_started" in daemon.log_text(), timeout=60)

    new_content = (samples / "BoxTextured.glb").read_bytes()
    (hot / "b-small.glb").write_bytes(new_content)  # While a-big uploads.
    wait_for(lambda: (hot / "done" / "b-small.glb.json").exists(), timeout=120)
    wait_for(lambda: (hot / "done" / "a-big.glb.json").exists(), timeout=120)
    assert daemon.stop() == 0

    assert (hot / "done" / "b-small.glb").read_bytes() == new_content
    assert sidecar(hot / "done" / "b-small.glb")["sha256"] == sha256(new_content)
    assert uploads(sandbox)["b-small.glb"] == sha256(new_content)
    confirmed = [job for job in sandbox.jobs() if job["confirmCount"]]
    names = sorted(m["fileName"] for job in confirmed for m in job["models"])
    assert names == ["a-big.glb", "b-small.glb"]
    assert "file_changed" in daemon.log_text()
