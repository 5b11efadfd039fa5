"""One writer per run folder. A run holds its folder for its life with an OS lock (`flock` on `<run>/.lock`)
that dies with its process: a second command on the same folder (two `digitlab-train` with one
`hydra.run.dir`, a sweep started twice into one `hydra.sweep.dir`) is refused in one paragraph naming the
folder and the process holding it (the holder writes who it is into the lock file), before it writes
anything; a killed run leaves no lock behind, so its `resume=true` is never blocked. Held once per process
(the single-run check and the job's run take it in turn); DDP's child processes (LOCAL_RANK > 0) write under
their parent's hold. Whoever takes the hold removes the temporary files a killed writer left in the run's
folders (`rundir.Run.remove_leftovers`). Kept rather than `filelock.FileLock` (used elsewhere for short
critical sections): the refusal names the holder (pid, host, since when), which the lock file's own content
carries here, and a test can read the holder without taking the lock (`check_free`).
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from digitlab.errors import DigitlabError
from digitlab.rundir import Run

LOCK_FILE = ".lock"

_held: dict[Path, int] = {}  # folder -> the open, locked file descriptor of its lock file, in this process


class FolderInUse(DigitlabError):
    def __init__(self, folder: Path, holder: str) -> None:
        super().__init__(
            f"{folder} is in use: another digitlab command ({holder}) is writing a run or sweep there. Two "
            "commands writing one folder would leave one run's record beside the other's checkpoints, so this one "
            "was refused before it wrote anything. Wait for that command to end (then resume=true continues "
            "its run if it stopped early), or give this one another folder (hydra.run.dir=... for a run, "
            "hydra.sweep.dir=... for a sweep)."
        )


def _child_of_a_holder() -> bool:
    return int(os.environ.get("LOCAL_RANK", 0)) > 0


def hold(folder: str | Path) -> None:
    """Take `folder`'s lock for this process (the folder made if missing), or raise FolderInUse. Taken again
    by the same process, it is already held."""
    path = Path(folder).absolute()
    if path in _held or _child_of_a_holder():
        return
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _lock_or_refuse(fd, path)
    except FolderInUse:
        os.close(fd)
        raise
    since = time.strftime("%Y-%m-%d %H:%M:%S")
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, since {since}\n".encode(), 0)
    _held[path] = fd
    Run(path).remove_leftovers()


def check_free(folder: str | Path) -> None:
    """FolderInUse if another process holds `folder`; writes nothing (a command that is then refused for
    another reason leaves the folder as it was)."""
    path = Path(folder).absolute()
    if path in _held or _child_of_a_holder():
        return
    try:
        fd = os.open(path / LOCK_FILE, os.O_RDONLY)
    except FileNotFoundError:
        return  # never held (or a run from before locks)
    try:
        _lock_or_refuse(fd, path)
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def release(folder: str | Path) -> None:
    fd = _held.pop(Path(folder).absolute(), None)
    if fd is not None:
        os.close(fd)  # closing the descriptor releases the lock


@contextmanager
def holding(folder: str | Path) -> Iterator[None]:
    """`folder` held while the block runs (and after it, if this process held it before)."""
    already = Path(folder).absolute() in _held
    hold(folder)
    try:
        yield
    finally:
        if not already:
            release(folder)


def _lock_or_refuse(fd: int, path: Path) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
        raise FolderInUse(path, holder or "a process that has not said who it is yet") from None
