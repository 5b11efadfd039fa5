"""One writer per run folder. A run holds its folder for its life with an OS lock (`filelock`, an `flock` on
`<run>/.lock`) that dies with its process: a second command on the same folder (two `digitlab-train` with one
`hydra.run.dir`, a sweep started twice into one `hydra.sweep.dir`) is refused in one paragraph naming the
folder and the process holding it, before it writes anything; a killed run leaves no lock behind, so its
`resume=true` is never blocked. Held once per process (the single-run check and the job's run take it in turn);
DDP's child processes (LOCAL_RANK > 0) write under their parent's hold.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from digitlab.errors import DigitlabError

LOCK_FILE = ".lock"
HOLDER_FILE = ".lock.holder"  # who holds it: pid, host, since when (read for the refusal)

_held: dict[Path, Any] = {}  # folder -> its acquired FileLock, in this process


class FolderInUse(DigitlabError):
    def __init__(self, folder: Path, holder: str) -> None:
        super().__init__(
            f"{folder} is in use: another digitlab command ({holder}) is writing a run there. Two commands "
            "writing one run folder would leave one run's record beside the other's checkpoints, so this one "
            "was refused before it wrote anything. Wait for that command to end (then resume=true continues "
            "its run if it stopped early), or give this one another folder (hydra.run.dir=... for a run, "
            "hydra.sweep.dir=... for a sweep)."
        )


def hold(folder: str | Path) -> None:
    """Take `folder`'s lock for this process (made if missing), or raise FolderInUse. Taken again by the
    same process, it is already held."""
    from filelock import FileLock, Timeout

    from digitlab.atomic import write_text

    path = Path(folder).absolute()
    if path in _held or int(os.environ.get("LOCAL_RANK", 0)) > 0:
        return
    path.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path / LOCK_FILE, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise FolderInUse(path, _holder(path)) from None
    _held[path] = lock
    since = time.strftime("%Y-%m-%d %H:%M:%S")
    write_text(path / HOLDER_FILE, f"pid {os.getpid()} on {socket.gethostname()}, since {since}\n")


def release(folder: str | Path) -> None:
    lock = _held.pop(Path(folder).absolute(), None)
    if lock is not None:
        (Path(lock.lock_file).parent / HOLDER_FILE).unlink(missing_ok=True)
        lock.release()


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


def _holder(path: Path) -> str:
    try:
        return (path / HOLDER_FILE).read_text().strip() or "a process"
    except OSError:
        return "a process that has not said who it is yet"
