"""The ``retry`` command: put models from ``failed/`` back in their hot folder.

A model in ``failed/`` (or a subfolder of it, for models dropped in
subfolders) is moved back to where it was dropped: the sidecar's ``file``,
relative to the hot folder, under that name when it is free, else as
``name (2).glb`` and so on; nothing is ever replaced, because the move is
:func:`glossi_watch.filing.move_file`. A model from a subfolder goes back to
the top of the hot folder when the folder no longer watches subfolders.

Its sidecar is removed after the move, so a killed run leaves at worst a
stale sidecar in ``failed/``, never a lost model. The daemon, running or
started later, sees the model as a new drop; the state store keeps the old
rows as history.

Models are selected by their name in ``failed/``, by the sidecar's
``reason``, or all at once. A model without a readable sidecar can still be
named, or taken with the rest by ``--all``. Only regular files are moved
back: an entry filed as ``not_regular_file`` would only be refused again.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from glossi_watch.config import Config, FolderConfig
from glossi_watch.errors import FilingError
from glossi_watch.filing import choose_destination, ensure_dir, move_file
from glossi_watch.names import is_candidate_name
from glossi_watch.sidecar import SIDECAR_SUFFIX, sidecar_path


@dataclass(frozen=True)
class FailedModel:
    """A model in a folder's ``failed/``, with its sidecar if it has one."""

    folder: FolderConfig
    path: Path
    sidecar: dict[str, Any]

    @property
    def stored_as(self) -> str:
        """Its path relative to ``failed/``, with ``/`` between the parts."""
        return self.path.relative_to(self.folder.failed_dir).as_posix()

    @property
    def dropped_as(self) -> PurePosixPath:
        """Where it was dropped, relative to the hot folder.

        The sidecar's ``file`` when that is a plain relative path, else its
        place in ``failed/``; without subfolders, only the name is kept.
        """
        dropped = PurePosixPath(self.stored_as)
        recorded = self.sidecar.get("file")
        if isinstance(recorded, str) and _is_plain_relative(recorded):
            dropped = PurePosixPath(recorded)
        if self.folder.subfolders != "recursive":
            return PurePosixPath(dropped.name)
        return dropped

    @property
    def reason(self) -> str | None:
        reason = self.sidecar.get("reason")
        return reason if isinstance(reason, str) else None


def failed_models(folder: FolderConfig) -> list[FailedModel]:
    """The models in ``folder``'s ``failed/`` and its subfolders, by path.

    A missing ``failed/`` holds none; one that cannot be read raises
    FilingError.
    """
    try:
        paths = sorted(_regular_files(folder.failed_dir))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise FilingError(folder.failed_dir, f"cannot be read: {exc.strerror}") from exc
    present = set(paths)
    return [
        FailedModel(folder, path, _read_sidecar(sidecar_path(path)))
        for path in paths
        if is_candidate_name(path.name, folder) and not _is_sidecar(path, present)
    ]


def requeue(model: FailedModel) -> Path:
    """Move ``model`` back into its hot folder and drop its sidecar.

    Returns where the model now is. Raises FilingError if it cannot be moved;
    it is then still in ``failed/`` with its sidecar.
    """
    dropped = model.folder.path / model.dropped_as
    if not dropped.parent.is_dir():
        ensure_dir(dropped.parent)  # The subfolder it came from, made again.
    destination = choose_destination(dropped.parent, dropped.name)
    moved = move_file(model.path, destination)
    try:
        sidecar_path(model.path).unlink(missing_ok=True)
    except OSError as exc:
        raise FilingError(
            sidecar_path(model.path), f"cannot be removed: {exc.strerror}"
        ) from exc
    return moved


def run_retry(
    config: Config,
    *,
    names: Iterable[str] = (),
    reason: str | None = None,
    everything: bool = False,
) -> int:
    """Requeue the selected models, one line each; return the exit status.

    Exactly one way of selecting must be used. The status is 1 if a named
    model is in no ``failed/`` folder or a model could not be moved, else 0.
    """
    wanted = {PurePosixPath(name).as_posix() for name in names}
    if sum((bool(wanted), reason is not None, everything)) != 1:
        print(
            "glossi-watch: say which files to retry: NAME ..., --reason CODE or --all",
            file=sys.stderr,
        )
        return 2

    models = [model for folder in config.folders for model in failed_models(folder)]
    chosen = [
        model
        for model in models
        if everything
        or _named(model, wanted)
        or (reason is not None and model.reason == reason)
    ]
    status = 0
    found = {name for model in chosen for name in wanted if _named(model, {name})}
    for name in sorted(wanted - found):
        print(f"glossi-watch: {name} is in no failed/ folder", file=sys.stderr)
        status = 1
    if not chosen and not wanted:
        print("nothing to retry")

    for model in chosen:
        try:
            moved = requeue(model)
        except FilingError as exc:
            print(f"glossi-watch: {exc}", file=sys.stderr)
            status = 1
            continue
        why = f" (failed: {model.reason})" if model.reason else ""
        print(f"{model.path} -> {moved}{why}")
    return status


def _named(model: FailedModel, names: set[str]) -> bool:
    """Whether ``names`` holds its name, its path in ``failed/`` or in full."""
    return bool({model.path.name, model.stored_as, str(model.path)} & names)


def _regular_files(directory: Path) -> Iterator[Path]:
    """Regular files in ``directory`` and below, never following links."""
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                yield from _regular_files(Path(entry.path))
            elif entry.is_file(follow_symlinks=False):
                yield Path(entry.path)


def _is_sidecar(path: Path, present: set[Path]) -> bool:
    model = path.with_name(path.name.removesuffix(SIDECAR_SUFFIX))
    return path.name.endswith(SIDECAR_SUFFIX) and model in present


def _is_plain_relative(text: str) -> bool:
    parts = PurePosixPath(text).parts
    return bool(parts) and not text.startswith("/") and ".." not in parts


def _read_sidecar(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}
