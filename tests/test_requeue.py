"""glossi-watch retry: failed models go back to be tried again, never clobbering.

The end-to-end test runs the real daemon against the real sandbox; the others
arrange failed/ by hand with real files and run the command.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomli_w

from glossi_watch.cli import main
from tests.harness import PROJECT_ROOT, Daemon, SandboxProcess, wait_for, write_config


def sidecar(path: Path) -> dict[str, object]:
    document: dict[str, object] = json.loads(path.read_text())
    return document


def test_too_large_model_is_retried_after_the_limit_is_raised(
    tmp_path: Path, sandbox: SandboxProcess, samples: Path
) -> None:
    """Rejected as too_large, then retried by reason: it lands in done/."""
    config = write_config(tmp_path, sandbox, folder={"max_file_bytes": 100})
    hot = tmp_path / "hot"
    daemon = Daemon(config, tmp_path / "daemon.log").start()
    shutil.copyfile(samples / "Box.glb", hot / "Box.glb")
    rejected = hot / "failed" / "Box.glb.json"
    wait_for(rejected.exists, timeout=90)
    assert daemon.stop() == 0
    assert sidecar(rejected)["reason"] == "too_large"

    write_config(tmp_path, sandbox)  # The default limit: 1 GB.
    daemon = Daemon(config, tmp_path / "daemon.log").start()
    try:
        retried = subprocess.run(
            [sys.executable, "-m", "glossi_watch", "retry", "--config", str(config)]
            + ["--reason", "too_large"],
            capture_output=True,
            text=True,
            cwd=PROJECT_ROOT,
            timeout=60,
        )
        done = hot / "done" / "Box.glb.json"
        wait_for(done.exists, timeout=90)
    finally:
        assert daemon.stop() == 0

    assert retried.returncode == 0, retried.stderr
    assert retried.stdout.splitlines() == [
        f"{hot / 'failed' / 'Box.glb'} -> {hot / 'Box.glb'} (failed: too_large)"
    ]
    assert sidecar(done)["status"] == "done"
    expected = hashlib.sha256((samples / "Box.glb").read_bytes()).hexdigest()
    assert sidecar(done)["sha256"] == expected
    assert not any((hot / "failed").iterdir())


def local_config(directory: Path, **folder: object) -> Path:
    """One hot folder at ``directory / 'hot'``; nothing here talks to an API."""
    key_file = directory / "api-key"
    key_file.write_text("glsi_test_key\n")
    key_file.chmod(0o600)
    (directory / "hot" / "failed").mkdir(parents=True)
    document = {
        "state_db": str(directory / "state.db"),
        "api": {"base_url": "http://127.0.0.1:9/api/v1", "api_key_file": str(key_file)},
        "folders": [{"path": str(directory / "hot"), **folder}],
    }
    path = directory / "glossi-watch.toml"
    path.write_text(tomli_w.dumps(document))
    path.chmod(0o600)
    return path


def fail(hot: Path, stored_as: str, *, dropped_as: str, reason: str) -> Path:
    """A model in failed/ with the sidecar the daemon would have written."""
    model = hot / "failed" / stored_as
    model.write_bytes(b"glTF" + stored_as.encode())
    document = {"status": "failed", "file": dropped_as, "stored_as": stored_as}
    (hot / "failed" / (stored_as + ".json")).write_text(
        json.dumps({**document, "reason": reason})
    )
    return model


def retry(config: Path, *args: str) -> int:
    return main(["retry", "--config", str(config), *args])


class TestRetry:
    def test_model_returns_under_the_name_it_was_dropped_under(
        self, tmp_path: Path
    ) -> None:
        """failed/chair (2).glb was dropped as chair.glb, which is free again."""
        config = local_config(tmp_path)
        hot = tmp_path / "hot"
        model = fail(hot, "chair (2).glb", dropped_as="chair.glb", reason="not_glb")
        content = model.read_bytes()

        status = retry(config, "chair (2).glb")

        assert status == 0
        assert (hot / "chair.glb").read_bytes() == content
        assert not model.exists()
        assert not (hot / "failed" / "chair (2).glb.json").exists()

    def test_a_taken_name_is_never_replaced(self, tmp_path: Path) -> None:
        """With chair.glb back in the folder already, the retry is chair (2)."""
        config = local_config(tmp_path)
        hot = tmp_path / "hot"
        fail(hot, "chair.glb", dropped_as="chair.glb", reason="not_glb")
        (hot / "chair.glb").write_bytes(b"the artist's new chair")

        status = retry(config, "chair.glb")

        assert status == 0
        assert (hot / "chair.glb").read_bytes() == b"the artist's new chair"
        assert (hot / "chair (2).glb").read_bytes() == b"glTFchair.glb"

    def test_reason_selects_only_that_reason(self, tmp_path: Path) -> None:
        """--reason too_large leaves the not_glb failures where they are."""
        config = local_config(tmp_path)
        hot = tmp_path / "hot"
        fail(hot, "big.glb", dropped_as="big.glb", reason="too_large")
        fail(hot, "page.glb", dropped_as="page.glb", reason="not_glb")

        status = retry(config, "--reason", "too_large")

        assert status == 0
        assert (hot / "big.glb").exists()
        assert (hot / "failed" / "page.glb").exists()
        assert (hot / "failed" / "page.glb.json").exists()

    def test_all_takes_models_without_sidecars_too(self, tmp_path: Path) -> None:
        """--all moves every model in failed/, sidecar or not."""
        config = local_config(tmp_path)
        hot = tmp_path / "hot"
        fail(hot, "a.glb", dropped_as="a.glb", reason="job_failed")
        (hot / "failed" / "b.glb").write_bytes(b"glTF no sidecar")

        status = retry(config, "--all")

        assert status == 0
        assert sorted(path.name for path in hot.glob("*.glb")) == ["a.glb", "b.glb"]
        assert not any((hot / "failed").iterdir())

    def test_names_select_only_the_named(self, tmp_path: Path) -> None:
        """Naming one model leaves the others, sidecar or not, in failed/."""
        config = local_config(tmp_path)
        hot = tmp_path / "hot"
        named = fail(hot, "a.glb", dropped_as="a.glb", reason="job_failed")
        (hot / "failed" / "b.glb").write_bytes(b"glTF no sidecar")

        status = retry(config, str(named))

        assert status == 0
        assert (hot / "a.glb").exists()
        assert (hot / "failed" / "b.glb").exists()

    def test_subfolder_drop_returns_to_its_subfolder(self, tmp_path: Path) -> None:
        """failed/sub/x.glb, dropped as sub/x.glb, goes back to sub/."""
        config = local_config(tmp_path, subfolders="recursive")
        hot = tmp_path / "hot"
        (hot / "failed" / "sub").mkdir()
        fail(hot, "sub/x.glb", dropped_as="sub/x.glb", reason="job_failed")

        status = retry(config, "sub/x.glb")

        assert status == 0
        assert (hot / "sub" / "x.glb").exists()
        assert not (hot / "failed" / "sub" / "x.glb.json").exists()

    def test_without_subfolders_a_drop_returns_to_the_top(self, tmp_path: Path) -> None:
        """When subfolders are not watched, sub/x.glb comes back as x.glb."""
        config = local_config(tmp_path)
        hot = tmp_path / "hot"
        (hot / "failed" / "sub").mkdir()
        fail(hot, "sub/x.glb", dropped_as="sub/x.glb", reason="job_failed")

        status = retry(config, "--all")

        assert status == 0
        assert (hot / "x.glb").exists()
        assert not (hot / "sub").exists()

    def test_missing_name_fails_but_the_others_move(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A name not in failed/ is reported with exit 1; the rest still move."""
        config = local_config(tmp_path)
        hot = tmp_path / "hot"
        fail(hot, "a.glb", dropped_as="a.glb", reason="job_failed")

        status = retry(config, "a.glb", "ghost.glb")

        assert status == 1
        assert "ghost.glb is in no failed/ folder" in capsys.readouterr().err
        assert (hot / "a.glb").exists()

    def test_a_selection_is_required(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Without NAME, --reason or --all nothing moves, and it says why."""
        config = local_config(tmp_path)
        model = fail(tmp_path / "hot", "a.glb", dropped_as="a.glb", reason="x")

        status = retry(config)

        assert status == 2
        assert "--reason CODE or --all" in capsys.readouterr().err
        assert model.exists()
