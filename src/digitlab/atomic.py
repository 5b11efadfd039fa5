"""Every file digitlab writes is written here: to a temporary file in the same folder, flushed to the disk,
then renamed over the target. A reader (or a later command) sees the previous file or the new one, never
half of one. A write that fails (no space, no permission, a read-only file system) removes its temporary
file, leaves the previous good file, and raises `WriteFailed`: one paragraph naming the path and the OS's
reason.

Files written together (`together`: a stack's trials' pictures and checkpoints at its end) are committed
together: each temporary file is written, then one `syncfs` flushes their file system once, then each is
renamed into place. The same guarantee as one `fsync` per file, at one disk flush: 768 pictures of a
256-trial stack waited 1.2 s for their fsyncs one by one. It is for many files at once: a flush of the file
system also waits for whatever else is written there (other processes' files too).

A writer killed mid-write leaves its temporary file (`.<name>.<...>.partial`, hidden beside the file it was
to become); the next process that holds the run's folder removes it (`remove_leftovers`, from
`run_lock.hold`). Kept rather than Lightning's CheckpointIO alone: that covers checkpoints (and
`TorchCheckpointIO` writes them in place), while every file a run leaves (JSON, YAML, PNG, event files) needs
the same guarantee; `checkpoints.CheckpointFiles` is the CheckpointIO that writes through this module.
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import errno
import functools
import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
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


class _Batch:
    """Temporary files written whole and not yet flushed, each with the path it is renamed to."""

    def __init__(self) -> None:
        self.pending: list[tuple[str, Path]] = []
        self.lock = threading.Lock()  # a batch's files may be written from helper threads

    def add(self, partial: str, path: Path) -> None:
        with self.lock:
            self.pending.append((partial, path))


_batch: contextvars.ContextVar[_Batch | None] = contextvars.ContextVar("digitlab_atomic_batch", default=None)


@contextlib.contextmanager
def together() -> Iterator[None]:
    """The files written in this block (by this code, and by helper threads it runs in a copy of its context,
    `contextvars.copy_context().run`) appear when it ends, even when it ends with an error: each is written
    whole to its temporary file, then their file systems are flushed once each, then each is renamed into
    place in the order written. A write that fails raises `WriteFailed` at once, as alone; a flush that fails
    finds the files it failed (one `fsync` each), renames the rest and raises `WriteFailed` for the first.
    Nothing in the block may read back a file it wrote. Without `syncfs` (not Linux), each file is flushed
    as it is written, as outside a batch."""
    if _syncfs() is None or _batch.get() is not None:  # nested: the outer block commits
        yield
        return
    batch = _Batch()
    token = _batch.set(batch)
    try:
        yield
    except BaseException:
        _batch.reset(token)
        with contextlib.suppress(WriteFailed):  # the block's own error is the one to report
            _commit(batch.pending)
        raise
    _batch.reset(token)
    _commit(batch.pending)


PARTIAL = ".partial"  # the suffix of every temporary file a write makes beside its target


def temporary_path(path: Path, tag: str) -> Path:
    """A hidden temporary name beside `path` (`tag` tells writers apart), renamed over it when whole."""
    return path.with_name(f".{path.name}.{tag}{PARTIAL}")


def is_leftover(path: Path) -> bool:
    return path.name.startswith(".") and path.name.endswith(PARTIAL)


def remove_leftovers(folders: Iterable[Path]) -> None:
    """The temporary files killed writers left directly in `folders`, removed. Only the process that holds
    them calls it (`rundir.Run.remove_leftovers`): no write of another process can be under way there."""
    for folder in folders:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            path = Path(entry.path)
            if is_leftover(path) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(OSError):
                    path.unlink()


def write_atomically(path: str | Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Call `write(file)` on a temporary file beside `path`, flush and fsync it, and rename it to `path` (in a
    `together` block: flushed and renamed at its end)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(prefix=f".{path.name}.", suffix=PARTIAL, dir=path.parent)
    except OSError as err:
        raise WriteFailed(path, err) from err
    batch = _batch.get()
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            if batch is None:
                os.fsync(file.fileno())
        os.chmod(partial, 0o644)  # mkstemp makes it 0600; the renamed file is an ordinary one
        if batch is not None:
            batch.add(partial, path)
            return
        os.replace(partial, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise WriteFailed(path, err) from err
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise


@functools.cache
def _syncfs() -> Callable[[int], int] | None:
    """Linux's syncfs(2) (glibc >= 2.14): flush the whole file system an open file is on."""
    try:
        function = ctypes.CDLL(None, use_errno=True).syncfs
    except (AttributeError, OSError):
        return None
    function.argtypes, function.restype = [ctypes.c_int], ctypes.c_int
    return function


def _commit(pending: list[tuple[str, Path]]) -> None:
    """Flush each file system the `pending` files are on, then rename them into place (`together`)."""
    failed: dict[str, OSError] = {}
    flushed: set[int] = set()
    for partial, _ in pending:
        try:
            device = os.stat(partial).st_dev
            if device in flushed:
                continue
            fd = os.open(partial, os.O_RDONLY)
            try:
                if _syncfs()(fd) != 0:  # a writeback error somewhere on it: find which files it hit
                    failed.update(_fsync_each(pending, device))
            finally:
                os.close(fd)
            flushed.add(device)
        except OSError as err:
            failed[partial] = err
    first: tuple[Path, OSError] | None = None
    for partial, path in pending:
        try:
            if partial in failed:
                raise failed[partial]
            os.replace(partial, path)
        except OSError as err:
            with contextlib.suppress(OSError):
                os.unlink(partial)
            first = first or (path, err)
    if first is not None:
        raise WriteFailed(*first) from first[1]


def _fsync_each(pending: list[tuple[str, Path]], device: int) -> dict[str, OSError]:
    failed = {}
    for partial, _ in pending:
        try:
            if os.stat(partial).st_dev != device:
                continue
            with open(partial, "rb") as file:
                os.fsync(file.fileno())
        except OSError as err:
            failed[partial] = err
    return failed


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
