"""glossi-watch init: a configuration that loads, private, never clobbered.

The interactive test drives the real command through a real pseudo-terminal,
as an operator at a shell would.
"""

from __future__ import annotations

import fcntl
import os
import select
import stat
import subprocess
import sys
import termios
import time
import tomllib
from pathlib import Path

import pytest

from glossi_watch.cli import main
from glossi_watch.config import load_config
from tests.harness import PROJECT_ROOT

LOOPBACK_API = "http://127.0.0.1:9/api/v1"


def key_file(directory: Path) -> Path:
    path = directory / "api-key"
    path.write_text("glsi_test_key\n")
    path.chmod(0o600)
    return path


def init(directory: Path, *args: str) -> int:
    return main(
        [
            "init",
            "--api-key-file",
            str(directory / "api-key"),
            "--base-url",
            LOOPBACK_API,
            "--state-db",
            str(directory / "state.db"),
            "--output",
            str(directory / "glossi-watch.toml"),
            *args,
        ]
    )


class TestWithOptions:
    def test_written_configuration_loads_and_is_private(self, tmp_path: Path) -> None:
        """All options given: a 0600 file that load_config accepts as asked."""
        key_file(tmp_path)

        status = init(
            tmp_path, "--folder", str(tmp_path / "hot"), "--template-id", "tpl-9"
        )

        written = tmp_path / "glossi-watch.toml"
        assert status == 0
        assert stat.S_IMODE(written.stat().st_mode) == 0o600
        config = load_config(written)
        (folder,) = config.folders
        assert folder.path == tmp_path / "hot"
        assert folder.template_id == "tpl-9"
        assert folder.render_settings == {"renderBookmarks": True, "imageQuality": 1}
        assert config.api.base_url == LOOPBACK_API
        assert config.state_db == tmp_path / "state.db"
        assert "# The folder artists drop .glb files into." in written.read_text()

    def test_without_a_template_nothing_is_rendered(self, tmp_path: Path) -> None:
        """No template id: no render_settings, so the file still loads."""
        key_file(tmp_path)

        status = init(tmp_path, "--folder", str(tmp_path / "hot"))

        config = load_config(tmp_path / "glossi-watch.toml")
        assert status == 0
        assert config.folders[0].template_id is None
        assert config.folders[0].render_settings is None

    def test_existing_file_is_kept_unless_forced(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A second init refuses to replace the file; --force replaces it."""
        key_file(tmp_path)
        written = tmp_path / "glossi-watch.toml"
        written.write_text("# the operator's own\n")

        refused = init(tmp_path, "--folder", str(tmp_path / "hot"))
        kept = written.read_text()
        forced = init(tmp_path, "--folder", str(tmp_path / "hot"), "--force")

        assert refused == 1
        assert "pass --force" in capsys.readouterr().err
        assert kept == "# the operator's own\n"
        assert forced == 0
        assert load_config(written).folders[0].path == tmp_path / "hot"
        assert stat.S_IMODE(written.stat().st_mode) == 0o600

    def test_no_terminal_and_no_folder_is_a_clear_error(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Without a terminal nobody can be asked: --folder is required."""
        status = init(tmp_path)

        assert status == 2
        assert "init needs --folder" in capsys.readouterr().err
        assert not (tmp_path / "glossi-watch.toml").exists()

    def test_invalid_answer_writes_nothing(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A value the loader refuses is reported and no file appears."""
        key_file(tmp_path)

        status = init(
            tmp_path, "--folder", str(tmp_path / "hot"), "--base-url", "ftp://x"
        )

        assert status == 2
        assert "api.base_url: must be an http(s) URL" in capsys.readouterr().err
        assert [path.name for path in tmp_path.iterdir()] == ["api-key"]

    def test_missing_key_file_becomes_the_first_next_step(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """No key yet: the file is written and the key is the first to-do."""
        status = init(tmp_path, "--folder", str(tmp_path / "hot"))

        output = capsys.readouterr().out
        assert status == 0
        assert f"1. put the API key in {tmp_path / 'api-key'}" in output
        text = (tmp_path / "glossi-watch.toml").read_text()
        assert tomllib.loads(text)["api"]["api_key_file"] == str(tmp_path / "api-key")


class Terminal:
    """A child process on a pseudo-terminal that is its controlling tty."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.master, slave = os.openpty()
        self.process = subprocess.Popen(
            args,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
        )
        os.close(slave)
        self.transcript = ""

    def expect(self, text: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.transcript:
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([self.master], [], [], max(remaining, 0))
            if not ready:
                raise AssertionError(f"no {text!r} in {self.transcript!r}")
            try:
                self.transcript += os.read(self.master, 4096).decode()
            except OSError as exc:  # EIO: the child closed the terminal.
                raise AssertionError(f"no {text!r} in {self.transcript!r}") from exc

    def answer(self, prompt: str, reply: str) -> None:
        self.expect(prompt)
        self.transcript = self.transcript.split(prompt, 1)[1]
        os.write(self.master, reply.encode() + b"\n")

    def close(self) -> int:
        code = self.process.wait(timeout=60)
        os.close(self.master)
        return code


def test_questions_on_a_terminal_give_a_loading_configuration(tmp_path: Path) -> None:
    """At a terminal, init asks, takes the key unechoed, and writes both."""
    output = tmp_path / "glossi-watch.toml"
    command = [sys.executable, "-m", "glossi_watch", "init", "--output", str(output)]
    terminal = Terminal(command, cwd=PROJECT_ROOT)
    typed_key = "glsi_typed_" + "7" * 12

    try:
        terminal.answer("Hot folder to watch: ", str(tmp_path / "hot"))
        terminal.answer("(Enter: none): ", "tpl-7")
        terminal.answer("bookmarks? (y/n) [y]: ", "")
        terminal.answer("Image quality [1]: ", "high")
        terminal.expect("Answer a whole number, like 1.")
        terminal.answer("Image quality [1]: ", "2")
        terminal.answer("API key file [", str(tmp_path / "api-key"))
        terminal.answer("API base URL [", LOOPBACK_API)
        terminal.answer("State database [", str(tmp_path / "state.db"))
        terminal.answer("(hidden; Enter: add it later): ", typed_key)
        terminal.expect(f"wrote {output}")
    finally:
        status = terminal.close()

    assert status == 0
    assert typed_key not in terminal.transcript
    key = tmp_path / "api-key"
    assert key.read_text() == typed_key + "\n"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    (folder,) = load_config(output).folders
    assert folder.template_id == "tpl-7"
    assert folder.render_settings == {"renderBookmarks": True, "imageQuality": 2}
