"""Tests for glossi_watch.filing: real files under tmp_path, nothing patched.

Crash states are built on disk as a killed process would have left them, and
one test kills a real child process in the middle of a copy.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import time
import tracemalloc
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from glossi_watch import filing
from glossi_watch.errors import FilingError
from glossi_watch.filing import (
    choose_destination,
    ensure_dir,
    move_file,
    sha256_of,
    write_json_atomic,
)

MIB = 1024 * 1024
PROJECT_ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def partial_for(destination: Path) -> Path:
    """The partial-file name that the module documents for ``destination``."""
    key = hashlib.sha256(os.fsencode(destination.name)).hexdigest()[:24]
    return destination.with_name(".glossi-partial." + key)


def write_random(path: Path, size: int) -> str:
    """Write ``size`` random bytes to ``path`` in pieces; their sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with open(path, "wb") as stream:
        for start in range(0, size, MIB):
            piece = os.urandom(min(MIB, size - start))
            digest.update(piece)
            stream.write(piece)
    return digest.hexdigest()


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """A hot folder and its done/ folder, both existing."""
    hot, done = tmp_path / "hot", tmp_path / "hot" / "done"
    done.mkdir(parents=True)
    return hot, done


class TestWriteJsonAtomic:
    def test_writes_indented_utf8_json_with_a_trailing_newline(
        self, tmp_path: Path
    ) -> None:
        """Sidecars are readable JSON that keeps accented names as written."""
        data = {"file": "stühl.glb", "bytes": 3, "reason": None}
        sidecar = tmp_path / "stühl.glb.json"

        write_json_atomic(sidecar, data)

        text = sidecar.read_text(encoding="utf-8")
        assert text == json.dumps(data, indent=2, ensure_ascii=False) + "\n"
        assert "stühl" in text

    def test_mode_is_exact_whatever_the_umask(self, tmp_path: Path) -> None:
        """A strict service umask does not hide sidecars from the team's group."""
        with umask(0o077):
            write_json_atomic(tmp_path / "a.json", {"x": 1})
        with umask(0):
            write_json_atomic(tmp_path / "b.json", {"x": 1}, mode=0o640)

        assert mode_of(tmp_path / "a.json") == 0o664
        assert mode_of(tmp_path / "b.json") == 0o640

    def test_replaces_a_sidecar_and_leaves_no_temporary_file(
        self, tmp_path: Path
    ) -> None:
        """Writing a sidecar again replaces it and leaves the folder clean."""
        sidecar = tmp_path / "chair.glb.json"
        sidecar.write_text("old")

        write_json_atomic(sidecar, {"outcome": "done"})

        assert json.loads(sidecar.read_text()) == {"outcome": "done"}
        assert os.listdir(tmp_path) == ["chair.glb.json"]

    def test_bad_data_leaves_the_existing_sidecar_whole(self, tmp_path: Path) -> None:
        """Data JSON cannot hold is refused before the old sidecar is touched."""
        sidecar = tmp_path / "chair.glb.json"
        sidecar.write_text('{"outcome": "done"}\n')

        with pytest.raises(TypeError):
            write_json_atomic(sidecar, {"when": object()})
        with pytest.raises(ValueError):
            write_json_atomic(sidecar, {"seconds": float("nan")})

        assert sidecar.read_text() == '{"outcome": "done"}\n'
        assert os.listdir(tmp_path) == ["chair.glb.json"]

    def test_removes_a_temporary_file_left_by_a_killed_write(
        self, tmp_path: Path
    ) -> None:
        """A write killed half-way leaves nothing behind once written again."""
        sidecar = tmp_path / "chair.glb.json"
        partial_for(sidecar).write_text('{"outc')

        write_json_atomic(sidecar, {"outcome": "done"})

        assert os.listdir(tmp_path) == ["chair.glb.json"]

    def test_a_name_that_is_not_utf8_is_written_as_escapes(
        self, tmp_path: Path
    ) -> None:
        """A file name that does not decode still gets a sidecar that reads back."""
        name = os.fsdecode(b"caf\xe9.glb")
        sidecar = tmp_path / "sidecar.json"

        write_json_atomic(sidecar, {"file": name})

        assert json.loads(sidecar.read_bytes())["file"] == name

    def test_an_unwritable_folder_is_a_filing_error(self, tmp_path: Path) -> None:
        """A missing folder is reported as a FilingError about the sidecar."""
        sidecar = tmp_path / "missing" / "chair.glb.json"

        with pytest.raises(FilingError) as caught:
            write_json_atomic(sidecar, {"x": 1})

        assert caught.value.path == sidecar


class TestEnsureDir:
    def test_creates_parents_with_exact_mode_whatever_the_umask(
        self, tmp_path: Path
    ) -> None:
        """done/ and its new parents are group-writable and setgid under umask 077."""
        done = tmp_path / "hot" / "sub" / "done"

        with umask(0o077):
            ensure_dir(done)

        assert done.is_dir()
        for directory in (tmp_path / "hot", tmp_path / "hot" / "sub", done):
            assert mode_of(directory) == 0o2775

    def test_repairs_the_mode_of_an_existing_folder(self, tmp_path: Path) -> None:
        """A folder left with the umask's mode by a killed call is fixed."""
        done = tmp_path / "done"
        done.mkdir(mode=0o700)

        ensure_dir(done, mode=0o2770)

        assert mode_of(done) == 0o2770

    def test_a_file_in_the_way_is_refused_and_kept(self, tmp_path: Path) -> None:
        """A file named done is never replaced by a folder."""
        done = tmp_path / "done"
        done.write_text("artist's notes")

        with pytest.raises(FilingError) as caught:
            ensure_dir(done)

        assert caught.value.path == done
        assert done.read_text() == "artist's notes"


class TestChooseDestination:
    def test_a_free_name_is_kept(self, tmp_path: Path) -> None:
        """A file is filed under its own name when nothing is in the way."""
        assert choose_destination(tmp_path, "chair.glb") == tmp_path / "chair.glb"

    def test_an_existing_file_gets_the_next_number(self, tmp_path: Path) -> None:
        """Two files of one name both get filed, the second as "name (2)"."""
        (tmp_path / "chair.glb").touch()

        chosen = choose_destination(tmp_path, "chair.glb")

        assert chosen == tmp_path / "chair (2).glb"

    def test_an_existing_sidecar_alone_also_takes_the_name(
        self, tmp_path: Path
    ) -> None:
        """A sidecar left without its file is never overwritten by another's."""
        (tmp_path / "chair.glb.json").touch()
        (tmp_path / "chair (2).glb").touch()

        chosen = choose_destination(tmp_path, "chair.glb")

        assert chosen == tmp_path / "chair (3).glb"

    def test_extension_and_case_are_kept(self, tmp_path: Path) -> None:
        """Only " (N)" is added; the extension and its case stay as given."""
        (tmp_path / "Chair.GLB").touch()

        chosen = choose_destination(tmp_path, "Chair.GLB", sidecar_suffix=".meta")

        assert chosen.name == "Chair (2).GLB"

    def test_nfc_and_nfd_names_are_kept_byte_for_byte(self, tmp_path: Path) -> None:
        """Names are never normalised, so the artist sees the bytes they used."""
        nfc = unicodedata.normalize("NFC", "café.glb")
        nfd = unicodedata.normalize("NFD", "café.glb")
        (tmp_path / nfc).touch()

        for_nfd = choose_destination(tmp_path, nfd)
        for_nfc = choose_destination(tmp_path, nfc)

        assert os.fsencode(for_nfd.name) == os.fsencode(nfd)
        expected = unicodedata.normalize("NFC", "café (2).glb")
        assert os.fsencode(for_nfc.name) == os.fsencode(expected)

    def test_a_255_byte_name_is_shortened_to_leave_room_for_its_sidecar(
        self, tmp_path: Path
    ) -> None:
        """The stem is cut, never the extension, so file and sidecar both fit."""
        name = "a" * 251 + ".glb"
        assert len(os.fsencode(name)) == 255

        first = choose_destination(tmp_path, name)
        first.touch()
        second = choose_destination(tmp_path, name)

        assert first.name == "a" * 246 + ".glb"
        assert second.name == "a" * 242 + " (2).glb"
        for chosen in (first, second):
            Path(str(chosen) + ".json").touch()  # would fail past 255 bytes
            assert len(os.fsencode(chosen.name + ".json")) <= 255

    def test_multibyte_names_are_cut_between_characters(self, tmp_path: Path) -> None:
        """Shortening never leaves half a UTF-8 character in the name."""
        name = "é" * 126 + ".glb"

        chosen = choose_destination(tmp_path, name)

        assert chosen.name == "é" * 123 + ".glb"
        assert chosen.name.encode("utf-8").decode("utf-8") == chosen.name

    def test_an_extension_too_long_to_fit_is_a_filing_error(
        self, tmp_path: Path
    ) -> None:
        """A name that cannot be made to fit is reported, not mangled."""
        with pytest.raises(FilingError):
            choose_destination(tmp_path, "a." + "x" * 250)

    @pytest.mark.parametrize("name", ["", ".", "..", "a/b.glb"])
    def test_a_name_that_is_not_plain_is_a_value_error(
        self, tmp_path: Path, name: str
    ) -> None:
        """Paths and special names are the caller's mistake."""
        with pytest.raises(ValueError):
            choose_destination(tmp_path, name)


class TestMoveFile:
    def test_moves_within_a_filesystem_by_rename(
        self, folders: tuple[Path, Path]
    ) -> None:
        """The file arrives whole in done/ and is gone from the hot folder."""
        hot, done = folders
        source = hot / "chair.glb"
        source.write_bytes(b"glTF chair")
        inode = source.stat().st_ino

        moved = move_file(source, done / "chair.glb")

        assert moved == done / "chair.glb"
        assert moved.read_bytes() == b"glTF chair"
        assert moved.stat().st_ino == inode
        assert not source.exists()

    @pytest.mark.parametrize("force_copy", [False, True])
    def test_never_overwrites_an_existing_destination(
        self, folders: tuple[Path, Path], force_copy: bool
    ) -> None:
        """Another file at the destination is kept, and so is the source."""
        hot, done = folders
        source, taken = hot / "chair.glb", done / "chair.glb"
        source.write_bytes(b"new chair")
        taken.write_bytes(b"old chair")

        with pytest.raises(FilingError):
            move_file(source, taken, force_copy=force_copy)

        assert source.read_bytes() == b"new chair"
        assert taken.read_bytes() == b"old chair"
        assert sorted(os.listdir(done)) == ["chair.glb"]

    def test_copy_verifies_and_then_removes_the_source(
        self, folders: tuple[Path, Path]
    ) -> None:
        """A copy keeps the bytes, mode and mtime, and leaves one file behind."""
        hot, done = folders
        source = hot / "chair.glb"
        digest = write_random(source, 3 * MIB + 17)
        source.chmod(0o640)
        os.utime(source, ns=(1_000_000_000, 2_000_000_000))

        moved = move_file(source, done / "chair.glb", force_copy=True)

        assert sha256_of(moved) == digest
        assert mode_of(moved) == 0o640
        assert moved.stat().st_mtime_ns == 2_000_000_000
        assert not source.exists()
        assert os.listdir(done) == ["chair.glb"]

    def test_copy_refuses_a_file_that_is_not_the_expected_one(
        self, folders: tuple[Path, Path]
    ) -> None:
        """A file changed since upload is not filed, and nothing is left over."""
        hot, done = folders
        source = hot / "chair.glb"
        source.write_bytes(b"changed after upload")

        with pytest.raises(FilingError):
            move_file(
                source, done / "chair.glb", expected_sha256="0" * 64, force_copy=True
            )

        assert source.read_bytes() == b"changed after upload"
        assert os.listdir(done) == []

    def test_expected_sha256_may_be_upper_case(
        self, folders: tuple[Path, Path]
    ) -> None:
        """The expected digest is compared without regard to hex case."""
        hot, done = folders
        source = hot / "chair.glb"
        source.write_bytes(b"chair")
        expected = hashlib.sha256(b"chair").hexdigest().upper()

        move_file(source, done / "c.glb", expected_sha256=expected, force_copy=True)

        assert (done / "c.glb").read_bytes() == b"chair"

    def test_a_missing_file_is_a_filing_error(self, folders: tuple[Path, Path]) -> None:
        """With neither name present the caller is told the file is gone."""
        hot, done = folders

        with pytest.raises(FilingError) as caught:
            move_file(hot / "chair.glb", done / "chair.glb")

        assert caught.value.path == hot / "chair.glb"

    def test_a_file_is_never_moved_onto_itself(
        self, folders: tuple[Path, Path]
    ) -> None:
        """Naming one file twice is refused rather than deleting it."""
        hot, _ = folders
        source = hot / "chair.glb"
        source.write_bytes(b"chair")

        with pytest.raises(FilingError):
            move_file(source, hot / "." / "chair.glb")

        assert source.read_bytes() == b"chair"

    def test_a_symlink_is_not_filed(self, folders: tuple[Path, Path]) -> None:
        """Only regular files are moved; a link and its target stay put."""
        hot, done = folders
        target = hot / "target.glb"
        target.write_bytes(b"chair")
        (hot / "link.glb").symlink_to(target)

        with pytest.raises(FilingError):
            move_file(hot / "link.glb", done / "link.glb")

        assert (hot / "link.glb").is_symlink()
        assert os.listdir(done) == []

    def test_a_50_mb_file_is_copied_whole_in_constant_memory(
        self, folders: tuple[Path, Path]
    ) -> None:
        """A large model crosses filesystems intact without being held in memory."""
        hot, done = folders
        source = hot / "big.glb"
        digest = write_random(source, 50 * MIB)

        tracemalloc.start()
        try:
            move_file(source, done / "big.glb", expected_sha256=digest, force_copy=True)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()

        assert sha256_of(done / "big.glb") == digest
        assert not source.exists()
        assert peak < 4 * MIB

    def test_the_link_fallback_never_overwrites(
        self, folders: tuple[Path, Path]
    ) -> None:
        """Where no-replace rename is missing, link-then-unlink refuses too."""
        hot, done = folders
        source, taken = hot / "chair.glb", done / "chair.glb"
        source.write_bytes(b"new")
        taken.write_bytes(b"old")

        with pytest.raises(FileExistsError):
            filing._link_then_unlink(source, taken)
        filing._link_then_unlink(source, done / "free.glb")

        assert taken.read_bytes() == b"old"
        assert (done / "free.glb").read_bytes() == b"new"
        assert not source.exists()


class TestMoveFileAfterACrash:
    def test_a_hard_link_at_both_names_is_finished(
        self, folders: tuple[Path, Path]
    ) -> None:
        """Killed between link and unlink: the source name is removed."""
        hot, done = folders
        source, destination = hot / "chair.glb", done / "chair.glb"
        source.write_bytes(b"chair")
        os.link(source, destination)

        move_file(source, destination)

        assert not source.exists()
        assert destination.read_bytes() == b"chair"
        assert destination.stat().st_nlink == 1

    def test_a_copy_at_both_names_is_verified_and_finished(
        self, folders: tuple[Path, Path]
    ) -> None:
        """Killed after a copy was placed: the source is removed once checked."""
        hot, done = folders
        source, destination = hot / "chair.glb", done / "chair.glb"
        digest = write_random(source, MIB + 1)
        shutil.copyfile(source, destination)

        move_file(source, destination, expected_sha256=digest)

        assert not source.exists()
        assert sha256_of(destination) == digest

    def test_a_copy_that_is_not_the_expected_file_keeps_both(
        self, folders: tuple[Path, Path]
    ) -> None:
        """Two equal files that do not match the upload are both left."""
        hot, done = folders
        source, destination = hot / "chair.glb", done / "chair.glb"
        source.write_bytes(b"chair")
        destination.write_bytes(b"chair")

        with pytest.raises(FilingError):
            move_file(source, destination, expected_sha256="0" * 64)

        assert source.read_bytes() == destination.read_bytes() == b"chair"

    def test_a_finished_move_is_recognised(self, folders: tuple[Path, Path]) -> None:
        """Source gone and destination present: done, if it is the right file."""
        hot, done = folders
        destination = done / "chair.glb"
        destination.write_bytes(b"chair")
        digest = hashlib.sha256(b"chair").hexdigest()

        moved = move_file(hot / "chair.glb", destination)
        checked = move_file(hot / "chair.glb", destination, expected_sha256=digest)
        with pytest.raises(FilingError):
            move_file(hot / "chair.glb", destination, expected_sha256="0" * 64)

        assert moved == checked == destination
        assert destination.read_bytes() == b"chair"

    @pytest.mark.parametrize("force_copy", [False, True])
    def test_a_partial_copy_left_by_a_killed_call_is_removed(
        self, folders: tuple[Path, Path], force_copy: bool
    ) -> None:
        """A half-written copy is cleared away and the move done again."""
        hot, done = folders
        source, destination = hot / "chair.glb", done / "chair.glb"
        source.write_bytes(b"whole chair")
        partial_for(destination).write_bytes(b"whole")
        assert filing.is_partial_name(partial_for(destination).name)

        move_file(source, destination, force_copy=force_copy)

        assert destination.read_bytes() == b"whole chair"
        assert not source.exists()
        assert os.listdir(done) == ["chair.glb"]

    def test_a_partial_linked_to_its_destination_is_finished(
        self, folders: tuple[Path, Path]
    ) -> None:
        """Killed inside the link fallback of a copy: one copy is kept."""
        hot, done = folders
        source, destination = hot / "chair.glb", done / "chair.glb"
        source.write_bytes(b"chair")
        destination.write_bytes(b"chair")
        os.link(destination, partial_for(destination))

        move_file(source, destination)

        assert not source.exists()
        assert os.listdir(done) == ["chair.glb"]
        assert destination.read_bytes() == b"chair"

    @pytest.mark.parametrize("delay", [0.0, 0.005, 0.02, 0.05, 0.1, 0.2])
    def test_a_copy_killed_at_any_moment_is_finished_by_the_next_call(
        self, folders: tuple[Path, Path], delay: float
    ) -> None:
        """SIGKILL mid-copy never loses the file, and a re-run completes it."""
        hot, done = folders
        source, destination = hot / "big.glb", done / "big.glb"
        digest = write_random(source, 32 * MIB)
        child_code = (
            "import sys; from pathlib import Path\n"
            "from glossi_watch.filing import move_file\n"
            "print('ready', flush=True)\n"
            "move_file(Path(sys.argv[1]), Path(sys.argv[2]), force_copy=True)\n"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("GLOSSI_")}
        env["PYTHONPATH"] = str(PROJECT_ROOT)

        with subprocess.Popen(
            [sys.executable, "-c", child_code, str(source), str(destination)],
            stdout=subprocess.PIPE,
            env=env,
        ) as child:
            assert child.stdout is not None
            assert child.stdout.readline() == b"ready\n"
            time.sleep(delay)
            child.kill()
        whole = [p for p in (source, destination) if p.exists()]
        assert digest in [sha256_of(path) for path in whole]
        move_file(source, destination, force_copy=True)

        assert not source.exists()
        assert sha256_of(destination) == digest
        assert os.listdir(done) == ["big.glb"]
