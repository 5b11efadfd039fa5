"""Every file digitlab writes is written here: to a temporary file in the same folder, flushed to the disk,
then renamed over the target. A reader (or a later command) sees the previous file or the new one, never
half of one. A write that fails (no space, no permission, a read-only file system) removes its temporary
file, leaves the previous good file, and raises `WriteFailed`: one paragraph naming the path and the OS's
reason.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from digitlab.errors import DigitlabError


class WriteFailed(DigitlabError):
    """A file could not be written; the previous version of it, if any, is unchanged."""

    def __init__(self, path: Path, err: OSError) -> None:
        self.path, self.errno = path, err.errno
        reason = err.strerror or str(err)
        name = errno.errorcode.get(err.errno or 0, "")
        hint = {
            errno.ENOSPC: "Free some space on that disk",
            errno.EDQUOT: "Free some space within your quota",
            errno.EROFS: "That file system is mounted read-only: choose another folder",
            errno.EACCES: "Make that folder writable",
            errno.EPERM: "Make that folder writable",
        }.get(err.errno or 0, "Fix the cause")
        super().__init__(
            f"could not write {path}: {reason}{f' ({name})' if name else ''}. Nothing half-written was left: "
            f"the previous version of that file, if any, is unchanged. {hint}, then run the command again (a "
            "training run with resume=true, to continue from its last checkpoint)."
        )


def write_atomically(path: str | Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Call `write(file)` on a temporary file beside `path`, flush and fsync it, and rename it to `path`."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    except OSError as err:
        raise WriteFailed(path, err) from err
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(partial, 0o644)  # mkstemp makes it 0600; the renamed file is an ordinary one
        os.replace(partial, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise WriteFailed(path, err) from err
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise


def write_bytes(path: str | Path, data: bytes) -> None:
    write_atomically(path, lambda file: file.write(data))


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path: str | Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")


@contextlib.contextmanager
def text_file(path: str | Path, newline: str | None = None) -> Iterator[IO[str]]:
    """A text file to write into (e.g. for `csv.writer`), renamed into place when the block ends."""
    import io

    buffer = io.StringIO(newline=newline)
    yield buffer
    write_text(path, buffer.getvalue())


def save_figure(figure: Any, path: str | Path, **kwargs: Any) -> None:
    """A matplotlib `Figure` as a file, atomically (the format from the file's suffix)."""
    suffix = Path(path).suffix.lstrip(".") or "png"
    write_atomically(path, lambda file: figure.savefig(file, format=suffix, **kwargs))
