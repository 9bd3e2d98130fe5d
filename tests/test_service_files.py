"""install-service: units systemd accepts, a plist launchd can read.

The rendered files go through the real ``systemd-analyze`` (verify and the
offline security review), and the daemon runs end to end under the kernel's
memory-deny-write-execute, as the unit asks of it.
"""

from __future__ import annotations

import os
import plistlib
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import tomli_w

from glossi_watch.cli import main
from glossi_watch.service_files import (
    default_installation,
    render_launchd_plist,
    render_systemd_template,
    render_systemd_unit,
)
from tests.harness import PROJECT_ROOT, SandboxProcess, wait_for, write_config

MAX_EXPOSURE = 2.0
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1


def systemd_analyze() -> str:
    """The systemd-analyze binary; CI installs it (.ci/run) and must have it.

    On a developer machine without systemd (macOS, say) these checks are
    skipped with that reason; under CI a missing tool is a failure.
    """
    found = shutil.which("systemd-analyze")
    if found is None:
        reason = (
            "systemd-analyze is not installed; it checks the rendered units "
            "(Debian/Ubuntu: apt-get install systemd)"
        )
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def verify(unit: Path) -> None:
    """Run systemd-analyze verify; fail on any complaint about our files."""
    result = subprocess.run(
        [systemd_analyze(), "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    ours = [line for line in result.stderr.splitlines() if str(unit.parent) in line]
    assert result.returncode == 0 and not ours, result.stderr


def local_config(directory: Path, *folders: Path) -> Path:
    """A configuration whose folders are ``folders``; it talks to nothing."""
    key_file = directory / "api-key"
    key_file.write_text("glsi_test_key\n")
    key_file.chmod(0o600)
    document = {
        "state_db": str(directory / "state" / "state.db"),
        "api": {"base_url": "http://127.0.0.1:9/api/v1", "api_key_file": str(key_file)},
        "folders": [{"path": str(folder)} for folder in folders],
    }
    path = directory / "glossi-watch.toml"
    path.write_text(tomli_w.dumps(document))
    path.chmod(0o600)
    return path


def install(*args: str) -> None:
    assert main(["install-service", *args]) == 0


class TestSystemdUnit:
    def test_rendered_unit_passes_systemd_verify(self, tmp_path: Path) -> None:
        """The unit for a real configuration, with awkward names, verifies."""
        hot = tmp_path / "hot folder 100%"
        hot.mkdir()
        config = local_config(tmp_path, hot)

        install("--config", str(config), "--output", str(tmp_path / "units"))

        unit = tmp_path / "units" / "glossi-watch.service"
        verify(unit)
        text = unit.read_text()
        assert f"--config {config}" in text
        assert f'ReadWritePaths="{tmp_path}/hot folder 100%%"' in text
        assert f"RequiresMountsFor={tmp_path}/state" in text
        assert "PrivateTmp=no" in text  # The folders are under /tmp.
        assert "User=glossi-watch" in text

    def test_unit_runs_this_installation_of_glossi_watch(self, tmp_path: Path) -> None:
        """ExecStart names the script of the Python that ran install-service."""
        config = local_config(tmp_path, tmp_path)

        install("--config", str(config), "--output", str(tmp_path))

        text = (tmp_path / "glossi-watch.service").read_text()
        (exec_start,) = re.findall(r"^ExecStart=(\S+)", text, re.MULTILINE)
        assert Path(exec_start).is_file()
        assert Path(exec_start).parent == Path(sys.executable).absolute().parent

    def test_instance_template_and_dropin_verify(self, tmp_path: Path) -> None:
        """--instance writes the template and a drop-in with this config."""
        hot = tmp_path / "hot"
        hot.mkdir()
        config = local_config(tmp_path, hot)
        units = tmp_path / "units"

        install("--config", str(config), "--instance", "studio", "--output", str(units))

        verify(units / "glossi-watch@studio.service")
        dropin = units / "glossi-watch@studio.service.d" / "glossi-watch.conf"
        text = dropin.read_text()
        assert f"ReadWritePaths={hot}" in text
        assert "ExecStart=\n" in text and f"--config {config}" in text

    def test_home_and_tmp_relax_only_what_they_must(self) -> None:
        """ProtectHome turns read-only for /home, PrivateTmp off for /tmp."""
        default = default_installation()
        in_home = replace(default, write_paths=(Path("/home/studio/hot"),))
        in_tmp = replace(default, write_paths=(Path("/tmp/hot"),))

        assert "ProtectHome=yes" in render_systemd_unit(default)
        assert "PrivateTmp=yes" in render_systemd_unit(default)
        assert "ProtectHome=read-only" in render_systemd_unit(in_home)
        assert "PrivateTmp=yes" in render_systemd_unit(in_home)
        assert "PrivateTmp=no" in render_systemd_unit(in_tmp)
        assert "ProtectHome=yes" in render_systemd_unit(in_tmp)

    def test_checked_in_files_are_what_install_service_renders(self) -> None:
        """systemd/ and launchd/ hold the rendering of the default layout."""
        default = default_installation()
        rendered = {
            "systemd/glossi-watch.service": render_systemd_unit(default).encode(),
            "systemd/glossi-watch@.service": render_systemd_template(
                default.command
            ).encode(),
            "launchd/app.glossi.watch.plist": render_launchd_plist(default),
        }

        for name, content in rendered.items():
            assert (PROJECT_ROOT / name).read_bytes() == content, (
                f"{name} is stale: write it again from glossi_watch.service_files"
            )

    def test_default_unit_exposure_is_low(self) -> None:
        """systemd-analyze security rates the checked-in unit well hardened."""
        unit = PROJECT_ROOT / "systemd" / "glossi-watch.service"

        result = subprocess.run(
            [systemd_analyze(), "security", "--offline=yes", "--no-pager", str(unit)],
            capture_output=True,
            text=True,
            timeout=60,
        )

        found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
        assert found, result.stdout + result.stderr
        assert float(found.group(1)) < MAX_EXPOSURE

    @pytest.mark.parametrize(
        ("user", "complaint"),
        [("root", "must not run as root"), ("nobody", "an account of its own")],
    )
    def test_root_and_nobody_are_refused(
        self,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        user: str,
        complaint: str,
    ) -> None:
        """The service runs as an account of its own, never root or nobody."""
        config = local_config(tmp_path, tmp_path)
        output = ["--output", str(tmp_path)]

        status = main(
            ["install-service", "--config", str(config), "--user", user, *output]
        )

        assert status == 1
        assert complaint in capsys.readouterr().err
        assert not (tmp_path / "glossi-watch.service").exists()


class TestLaunchdPlist:
    def test_plist_parses_and_has_the_service_keys(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--launchd --print gives a plist that runs this config, kept alive."""
        config = local_config(tmp_path, tmp_path)

        install("--config", str(config), "--launchd", "--print")

        plist = plistlib.loads(capsys.readouterr().out.encode())
        assert plist["Label"] == "app.glossi.watch"
        assert plist["ProgramArguments"][-3:] == ["run", "--config", str(config)]
        assert plist["KeepAlive"] == {"SuccessfulExit": False}
        assert plist["RunAtLoad"] is True
        assert plist["UserName"] == "glossi-watch"
        for key in (
            "ThrottleInterval",
            "StandardOutPath",
            "StandardErrorPath",
            "EnvironmentVariables",
            "ProcessType",
        ):
            assert key in plist


def test_daemon_works_without_writable_executable_memory(
    tmp_path: Path, sandbox: SandboxProcess, samples: Path
) -> None:
    """MemoryDenyWriteExecute=yes holds: the daemon files a model under it.

    The kernel's PR_SET_MDWE is what systemd's setting amounts to, and it
    is inherited by the daemon that the wrapper execs.
    """
    deny = (
        "import ctypes, os, sys\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        f"if libc.prctl({PR_SET_MDWE}, {PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0):\n"
        "    sys.exit(f'PR_SET_MDWE: errno {ctypes.get_errno()}')\n"
    )
    probe = subprocess.run([sys.executable, "-c", deny], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(
            f"this kernel cannot deny W+X memory (Linux 6.3+): {probe.stderr!r}"
        )
    config = write_config(tmp_path, sandbox)
    wrapper = deny + "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])\n"
    log = (tmp_path / "daemon.log").open("wb")
    command = [sys.executable, "-c", wrapper, "-m", "glossi_watch", "run"]
    daemon = subprocess.Popen(
        [*command, "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=PROJECT_ROOT,
    )
    hot = tmp_path / "hot"

    try:
        shutil.copyfile(samples / "Box.glb", hot / "Box.glb")
        wait_for(
            lambda: (
                (hot / "done" / "Box.glb.json").exists() or daemon.poll() is not None
            ),
            timeout=90,
        )
    finally:
        daemon.terminate()
        code = daemon.wait(timeout=30)
        log.close()

    assert (hot / "done" / "Box.glb.json").exists(), (
        tmp_path / "daemon.log"
    ).read_text()
    assert code == 0
