"""GLB inspection tells whole, still-being-written and impossible files apart."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest

from glossi_watch.glb import (
    demo_models,
    inspect_glb,
    inspect_glb_path,
    write_synthetic_glb,
)


def check(data: bytes, *, check_json: bool = False) -> tuple[str, str]:
    result = inspect_glb(io.BytesIO(data), len(data), check_json=check_json)
    return result.verdict, result.reason


@pytest.mark.parametrize("name", ["Box.glb", "BoxTextured.glb", "barrel.glb"])
def test_real_samples_are_whole(samples: Path, name: str) -> None:
    assert inspect_glb_path(samples / name, check_json=True).ok


def test_demo_models_are_valid_glbs() -> None:
    for data in demo_models().values():
        assert check(data, check_json=True) == ("ok", "")


def test_a_truncated_copy_is_incomplete_not_invalid(samples: Path) -> None:
    data = (samples / "barrel.glb").read_bytes()

    assert check(data[: len(data) // 2]) == ("incomplete", "truncated")
    assert check(data[:7]) == ("incomplete", "truncated")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty_file"),
        (b"<!DOCTYPE html><html>", "not_glb"),
        (b"version https://git-lfs.github.com/spec/v1\n", "not_glb"),
        (struct.pack("<4sII", b"glTF", 1, 12), "unsupported_version"),
        (struct.pack("<4sII", b"glTF", 2, 12), "inconsistent_chunks"),
    ],
)
def test_impossible_files_are_invalid(data: bytes, reason: str) -> None:
    assert check(data) == ("invalid", reason)


def test_trailing_bytes_are_inconsistent(samples: Path) -> None:
    data = (samples / "Box.glb").read_bytes() + b"\0\0\0\0"

    assert check(data) == ("invalid", "inconsistent_chunks")


def test_a_chunk_running_past_the_end_is_inconsistent(samples: Path) -> None:
    data = bytearray((samples / "Box.glb").read_bytes())
    struct.pack_into("<I", data, 12, len(data))

    assert check(bytes(data)) == ("invalid", "inconsistent_chunks")


def test_synthetic_glbs_have_the_exact_size(tmp_path: Path) -> None:
    path = tmp_path / "big.glb"
    write_synthetic_glb(path, 3 * 1024 * 1024 + 4, seed=1)

    assert path.stat().st_size == 3 * 1024 * 1024 + 4
    assert inspect_glb_path(path, check_json=True).ok


def test_a_preallocated_file_still_being_filled_is_incomplete(samples: Path) -> None:
    data = (samples / "BoxTextured.glb").read_bytes()
    json_length = struct.unpack_from("<I", data, 12)[0]
    filled = 20 + json_length  # Header and JSON chunk written, the rest zeros.
    preallocated = data[:filled] + bytes(len(data) - filled)

    assert check(preallocated) == ("incomplete", "truncated")
