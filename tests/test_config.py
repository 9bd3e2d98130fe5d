"""Configuration: a bad file stops start-up with one line naming the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from glossi_watch.config import DEFAULT_BASE_URL, load_config
from glossi_watch.errors import ConfigError
from tests.harness import PROJECT_ROOT

EXAMPLE = PROJECT_ROOT / "config.example.toml"


def write(tmp_path: Path, text: str, *, mode: int = 0o600) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    path.chmod(mode)
    return path


def key_file(tmp_path: Path, mode: int = 0o600) -> Path:
    path = tmp_path / "key"
    path.write_text("glsi_abc_123\n")
    path.chmod(mode)
    return path


def minimal(tmp_path: Path, extra_folder: str = "", extra_api: str = "") -> str:
    key = key_file(tmp_path)
    return (
        f'[api]\napi_key_file = "{key}"\n{extra_api}\n'
        f'[[folders]]\npath = "{tmp_path / "hot"}"\n{extra_folder}\n'
    )


class TestValidConfiguration:
    def test_defaults_fill_in_what_is_not_written(self, tmp_path: Path) -> None:
        config = load_config(write(tmp_path, minimal(tmp_path)))

        assert config.api.base_url == DEFAULT_BASE_URL
        (folder,) = config.folders
        assert folder.done_dir == tmp_path / "hot" / "done"
        assert folder.failed_dir == tmp_path / "hot" / "failed"
        assert folder.create_projects is True
        assert config.api.key_source.read().reveal() == "glsi_abc_123"

    def test_environment_key_wins_over_the_key_file(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("GLOSSI_API_KEY", "glsi_from_env")
        config = load_config(write(tmp_path, minimal(tmp_path)))

        assert config.api.key_source.read().reveal() == "glsi_from_env"

    def test_render_settings_pass_through_as_written(self, tmp_path: Path) -> None:
        text = minimal(
            tmp_path,
            'template_id = "t-1"\n'
            "render_settings = { renderBookmarks = true, imageQuality = 3, x = 1 }",
        )
        (folder,) = load_config(write(tmp_path, text)).folders

        assert dict(folder.render_settings or {}) == {
            "renderBookmarks": True,
            "imageQuality": 3,
            "x": 1,
        }

    def test_the_key_never_shows_in_a_repr(self, tmp_path: Path) -> None:
        config = load_config(write(tmp_path, minimal(tmp_path)))

        assert "glsi_abc_123" not in repr(config)
        assert "glsi_abc_123" not in repr(config.api.key_source.read())

    def test_the_shipped_example_is_valid(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("GLOSSI_API_KEY", "glsi_example")
        config = load_config(EXAMPLE)

        assert config.folders


@pytest.mark.parametrize(
    ("folder", "api", "key", "problem"),
    [
        ("debounce_secnds = 3", "", "folders[0].debounce_secnds", "unknown key"),
        ('debounce_seconds = "soon"', "", "folders[0].debounce_seconds", "number"),
        ("debounce_seconds = -1", "", "folders[0].debounce_seconds", "between"),
        ("create_projects = 1", "", "folders[0].create_projects", "true or false"),
        (
            "render_settings = { renderBookmarks = true }",
            "",
            "folders[0].template_id",
            "required",
        ),
        ('done_dir = "."', "", "folders[0].done_dir", "watched folder"),
        ('webhook_url = "ftp://x"', "", "folders[0].webhook_url", "http"),
        ("max_file_bytes = 6000000000", "", "folders[0].max_file_bytes", "between"),
        ("", 'base_url = "http://api.example.com/api/v1"', "api.base_url", "https"),
        ("", 'base_url = "not a url"', "api.base_url", "http(s) URL"),
    ],
)
def test_a_bad_value_names_the_key(
    tmp_path: Path, folder: str, api: str, key: str, problem: str
) -> None:
    path = write(tmp_path, minimal(tmp_path, folder, api))

    with pytest.raises(ConfigError) as caught:
        load_config(path)

    assert caught.value.key == key
    assert problem in caught.value.problem
    assert str(path) in str(caught.value)


class TestStructuralErrors:
    def test_no_folders(self, tmp_path: Path) -> None:
        key = key_file(tmp_path)
        path = write(tmp_path, f'[api]\napi_key_file = "{key}"\n')

        with pytest.raises(ConfigError, match="folders"):
            load_config(path)

    def test_not_toml(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="not valid TOML"):
            load_config(write(tmp_path, "[[folders]\npath = 1"))

    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="cannot read"):
            load_config(tmp_path / "nope.toml")

    def test_no_key_anywhere(self, tmp_path: Path) -> None:
        path = write(tmp_path, f'[[folders]]\npath = "{tmp_path}/hot"\n')

        with pytest.raises(ConfigError, match="GLOSSI_API_KEY"):
            load_config(path)

    def test_same_folder_twice(self, tmp_path: Path) -> None:
        text = minimal(tmp_path) + f'[[folders]]\npath = "{tmp_path / "hot"}"\n'

        with pytest.raises(ConfigError) as caught:
            load_config(write(tmp_path, text))

        assert caught.value.key == "folders[1].path"

    def test_key_file_readable_by_others(self, tmp_path: Path) -> None:
        key = key_file(tmp_path, mode=0o644)
        text = f'[api]\napi_key_file = "{key}"\n[[folders]]\npath = "{tmp_path}"\n'

        with pytest.raises(ConfigError, match="0644"):
            load_config(write(tmp_path, text))

    def test_inline_key_in_a_world_readable_config(self, tmp_path: Path) -> None:
        text = f'[api]\napi_key = "glsi_x_y"\n[[folders]]\npath = "{tmp_path}"\n'

        with pytest.raises(ConfigError, match="chmod 600"):
            load_config(write(tmp_path, text, mode=0o644))


def test_the_command_line_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    path = write(tmp_path, minimal(tmp_path, "settle_seconds = true"))

    result = subprocess.run(
        [sys.executable, "-m", "glossi_watch", "run", "--config", str(path)],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=60,
    )

    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "folders[0].settle_seconds" in result.stderr
    assert "Traceback" not in result.stderr


class TestOverlap:
    def test_a_folder_inside_another_is_refused(self, tmp_path: Path) -> None:
        text = minimal(tmp_path) + f'[[folders]]\npath = "{tmp_path / "hot" / "sub"}"\n'

        with pytest.raises(ConfigError) as caught:
            load_config(write(tmp_path, text))

        assert caught.value.key == "folders[1].path"
        assert "must not overlap" in caught.value.problem

    def test_a_done_dir_inside_another_folder_is_refused(self, tmp_path: Path) -> None:
        other = tmp_path / "other"
        text = minimal(tmp_path) + (
            f'[[folders]]\npath = "{other}"\ndone_dir = "{tmp_path / "hot" / "x"}"\n'
        )

        with pytest.raises(ConfigError) as caught:
            load_config(write(tmp_path, text))

        assert caught.value.key == "folders[1].done_dir"

    def test_side_by_side_folders_are_fine(self, tmp_path: Path) -> None:
        text = minimal(tmp_path) + f'[[folders]]\npath = "{tmp_path / "hot2"}"\n'

        assert len(load_config(write(tmp_path, text)).folders) == 2


def test_a_key_file_that_is_not_text_is_one_clear_error(tmp_path: Path) -> None:
    key = key_file(tmp_path)
    key.write_bytes(b"\xff\xfe\x00binary")
    text = f'[api]\napi_key_file = "{key}"\n[[folders]]\npath = "{tmp_path / "hot"}"\n'

    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(write(tmp_path, text))
