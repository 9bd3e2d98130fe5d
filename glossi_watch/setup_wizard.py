"""The ``init`` command: a first configuration, from options or questions.

What the options leave out is asked for, but only when stdin is a terminal;
otherwise defaults apply and a missing ``--folder`` is an error. The file is
TOML written by tomli-w with explanatory comments between the keys, mode
0600, and is validated with :func:`glossi_watch.config.load_config` before it
takes its name; an existing file is replaced only with ``--force``. A missing
API key file is not an error (the key often comes later, or from systemd):
it becomes the first of the next steps printed at the end.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import tempfile
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import tomli_w

from glossi_watch.config import DEFAULT_BASE_URL, load_config
from glossi_watch.errors import ConfigError, GlossiWatchError
from glossi_watch.service_files import DEFAULT_CONFIG, DEFAULT_KEY_FILE, STATE_ROOT

DEFAULT_STATE_DB = STATE_ROOT / "state.db"
DEFAULT_IMAGE_QUALITY = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
Answer = TypeVar("Answer")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``init`` to ``parser``."""
    parser.add_argument(
        "--folder", type=Path, metavar="PATH", help="the hot folder to watch"
    )
    parser.add_argument(
        "--template-id", metavar="ID", help="Glossi template for the projects"
    )
    parser.add_argument(
        "--render-bookmarks",
        action=argparse.BooleanOptionalAction,
        help="render the template's camera bookmarks (default: when a template "
        "is given)",
    )
    parser.add_argument(
        "--image-quality",
        type=int,
        metavar="N",
        help=f"imageQuality passed to the renders (default: {DEFAULT_IMAGE_QUALITY})",
    )
    parser.add_argument(
        "--api-key-file",
        type=Path,
        metavar="PATH",
        help=f"file holding the API key (default: {DEFAULT_KEY_FILE})",
    )
    parser.add_argument(
        "--base-url", metavar="URL", help=f"the API (default: {DEFAULT_BASE_URL})"
    )
    parser.add_argument(
        "--state-db",
        type=Path,
        metavar="PATH",
        help=f"the state database, on a local disk (default: {DEFAULT_STATE_DB})",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_CONFIG,
        metavar="FILE",
        help="where to write the configuration (default: %(default)s)",
    )
    parser.add_argument(
        "--force", action="store_true", help="replace an existing configuration"
    )


@dataclass(frozen=True)
class Settings:
    """Everything ``init`` writes; paths are absolute."""

    folder: Path
    template_id: str | None
    render_bookmarks: bool
    image_quality: int
    api_key_file: Path
    base_url: str
    state_db: Path


def run_init(args: argparse.Namespace) -> int:
    """Ask, write and validate the configuration; return the exit status."""
    output = args.output.expanduser().absolute()
    if output.exists() and not args.force:
        raise GlossiWatchError(f"{output} exists; pass --force to replace it")
    interactive = sys.stdin.isatty()
    if args.folder is None and not interactive:
        print(
            "glossi-watch: init needs --folder when stdin is not a terminal",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.render_bookmarks and not (args.template_id or interactive):
        print("glossi-watch: --render-bookmarks needs --template-id", file=sys.stderr)
        return EXIT_USAGE

    try:
        settings = _gather(args, _Asker(interactive))
        if interactive and not settings.api_key_file.exists():
            _offer_key(settings.api_key_file)
    except KeyboardInterrupt:
        print("\nglossi-watch: init interrupted; nothing written", file=sys.stderr)
        return EXIT_INTERRUPTED
    key_problem = _write_validated(output, render_config(settings, output), args.force)

    print(f"wrote {output} (mode 0600)")
    _print_next_steps(settings, output, key_problem)
    return 0


class _Asker:
    """Answers from the options, else from the terminal, else the default."""

    def __init__(self, interactive: bool) -> None:
        self.interactive = interactive

    def ask(
        self,
        question: str,
        given: Answer | None,
        default: Answer,
        parse: Callable[[str], Answer],
    ) -> Answer:
        if given is not None:
            return given
        if not self.interactive:
            return default
        shown = f" [{_shown(default)}]" if default not in (None, "") else ""
        return self._prompt(f"{question}{shown}: ", default, parse)

    def require(
        self, question: str, given: Answer | None, parse: Callable[[str], Answer]
    ) -> Answer:
        if given is not None:
            return given
        if not self.interactive:
            raise GlossiWatchError(f"no answer for {question!r} without a terminal")
        return self._prompt(f"{question}: ", None, parse)

    def _prompt(
        self, prompt: str, default: Answer | None, parse: Callable[[str], Answer]
    ) -> Answer:
        while True:
            try:
                reply = input(prompt).strip()
            except EOFError:
                raise GlossiWatchError(
                    "init: input ended before every answer"
                ) from None
            if not reply and default is not None:
                return default
            if not reply:
                print("  An answer is needed here.")
                continue
            try:
                return parse(reply)
            except ValueError as exc:
                print(f"  {exc}")


def _gather(args: argparse.Namespace, asker: _Asker) -> Settings:
    folder = asker.require("Hot folder to watch", args.folder, _path)
    template_id = asker.ask(
        "Glossi template id (Enter: none)", args.template_id, "", str
    )
    render = asker.ask(
        "Render the template's camera bookmarks? (y/n)",
        args.render_bookmarks,
        bool(template_id),
        _yes_no,
    )
    while render and not template_id:
        template_id = asker.require("Rendering needs a template id", None, str)
    quality = DEFAULT_IMAGE_QUALITY
    if render:
        quality = asker.ask("Image quality", args.image_quality, quality, _whole)

    key_file = asker.ask("API key file", args.api_key_file, DEFAULT_KEY_FILE, _path)
    base_url = asker.ask("API base URL", args.base_url, DEFAULT_BASE_URL, str)
    state_db = asker.ask("State database", args.state_db, DEFAULT_STATE_DB, _path)
    return Settings(
        folder=_path(str(folder)),
        template_id=template_id or None,
        render_bookmarks=render,
        image_quality=quality,
        api_key_file=_path(str(key_file)),
        base_url=base_url,
        state_db=_path(str(state_db)),
    )


def _shown(default: object) -> str:
    if isinstance(default, bool):
        return "y" if default else "n"
    return str(default)


def _path(text: str) -> Path:
    return Path(text).expanduser().absolute()


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError("Answer a whole number, like 1.") from None


def _yes_no(text: str) -> bool:
    if text.lower() in ("y", "yes"):
        return True
    if text.lower() in ("n", "no"):
        return False
    raise ValueError("Answer y or n.")


def render_config(settings: Settings, output: Path) -> str:
    """The text of ``output``: tomli-w's TOML with comments between the keys."""
    lines = [
        "# glossi-watch configuration, written by glossi-watch init.",
        "# config.example.toml explains every key. Before going live, run:",
        f"#   glossi-watch check --config {output}",
        *_entry(
            "Where the daemon keeps its state (SQLite): a local disk, never the "
            "network share.",
            state_db=str(settings.state_db),
        ),
        "",
        "[api]",
        *_entry("The Glossi Jobs API.", base_url=settings.base_url),
        *_entry(
            "The API key, in a file readable by its owner only (chmod 600). "
            "Under systemd the service reads it as the credential glossi-api-key "
            "instead; GLOSSI_API_KEY also works.",
            api_key_file=str(settings.api_key_file),
        ),
        "",
        "[[folders]]",
        *_entry(
            "The folder artists drop .glb files into. Finished files go to its "
            "done/ and failed/ folders, each with a JSON sidecar.",
            path=str(settings.folder),
        ),
    ]
    if settings.template_id:
        lines += _entry(
            "The Glossi template for the projects created from each model.",
            template_id=settings.template_id,
        )
    lines += [
        "",
        "# Files that arrive within this many seconds of each other share one job,",
        "# and larger files than max_file_bytes go to failed/ as too_large:",
        "# debounce_seconds = 10",
        "# max_file_bytes = 1073741824",
    ]
    if settings.render_bookmarks:
        lines += [
            "",
            "# Renders asked of each job, passed to the API as written.",
            "[folders.render_settings]",
            _toml(renderBookmarks=True, imageQuality=settings.image_quality),
        ]
    # A table's header sits right above its first comment.
    kept = [
        line
        for index, line in enumerate(lines)
        if line or index == 0 or not lines[index - 1].startswith("[")
    ]
    return "\n".join(kept) + "\n"


def _entry(comment: str, **table: Any) -> list[str]:
    return ["", *("# " + line for line in textwrap.wrap(comment, 76)), _toml(**table)]


def _toml(**table: Any) -> str:
    return tomli_w.dumps(table).rstrip("\n")


def _offer_key(key_file: Path) -> None:
    key = getpass.getpass(f"API key for {key_file} (hidden; Enter: add it later): ")
    if not key.strip():
        return
    try:
        key_file.parent.mkdir(parents=True, exist_ok=True)
        handle = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(handle, "w") as stream:
            stream.write(key.strip() + "\n")
    except OSError as exc:
        raise GlossiWatchError(f"cannot write {key_file}: {exc.strerror}") from exc
    print(f"wrote {key_file} (mode 0600)")


def _write_validated(output: Path, text: str, force: bool) -> ConfigError | None:
    """Write ``text`` to ``output`` once it loads; return a key problem, if any.

    The text is checked under a temporary name beside ``output``, so relative
    paths mean the same. A problem with anything but the API key raises
    ConfigError and writes nothing.
    """
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(prefix=f".{output.name}.", dir=output.parent)
    except OSError as exc:
        raise GlossiWatchError(f"cannot write {output}: {exc.strerror}") from exc

    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        key_problem = None
        try:
            load_config(partial)
        except ConfigError as exc:
            if not exc.key.startswith("api.api_key"):
                raise ConfigError(output, exc.key, exc.problem) from exc
            key_problem = exc
        _place(Path(partial), output, force)
    finally:
        Path(partial).unlink(missing_ok=True)
    return key_problem


def _place(partial: Path, output: Path, force: bool) -> None:
    try:
        if force:
            os.replace(partial, output)
        else:
            os.link(partial, output)  # Fails, rather than replacing, if taken.
    except FileExistsError as exc:
        raise GlossiWatchError(f"{output} exists; pass --force to replace it") from exc
    except OSError as exc:
        raise GlossiWatchError(f"cannot write {output}: {exc.strerror}") from exc


def _print_next_steps(
    settings: Settings, output: Path, key_problem: ConfigError | None
) -> None:
    steps = []
    if not settings.api_key_file.exists():
        steps.append(f"put the API key in {settings.api_key_file} (chmod 600)")
    elif key_problem is not None:
        steps.append(f"the API key: {key_problem.problem}")
    if not settings.folder.is_dir():
        steps.append(f"create the hot folder: mkdir -p '{settings.folder}'")
    steps.append(f"glossi-watch check --config '{output}'")
    steps.append(f"glossi-watch install-service --config '{output}'")
    print("Next:")
    for number, step in enumerate(steps, start=1):
        print(f"  {number}. {step}")
