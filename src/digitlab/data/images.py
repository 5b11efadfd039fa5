"""A split folder of class sub-folders of PNGs <-> validated uint8 tensors, decoded once and cached.

Decoding 14k PNGs takes seconds; loading the cached tensors takes milliseconds. The cache file is named by a
sha256 over every file's relative path and bytes, so any added, removed, renamed or edited image gives a new
key and the folder is decoded again; a copied folder (new mtimes, same bytes) reuses the cache. Reading all
the bytes costs more than loading the cache, so, as git's index does, a fingerprint of the listing (names,
sizes, mtimes) remembers the content key, and bytes are hashed again only when the listing changes. The
cache lives under the run's data dir, never in the image folder, which may be a user's read-only copy.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import torch

import digitlab.atomic as atomic
from digitlab.errors import DataError

log = logging.getLogger(__name__)

IMAGE_SIZE = (28, 28)
CACHE_VERSION = 1  # bump when the cached format changes


def list_images(split_dir: Path, class_names: tuple[str, ...]) -> list[tuple[int, str]]:
    """`(label, "<class>/<file>")` for every PNG, label = position of its folder in `class_names`, in a
    stable order. Plain strings, not Paths: a split holds up to 60k files and this runs on every start."""
    items = []
    for label, name in enumerate(class_names):
        try:
            names = sorted(f for f in os.listdir(split_dir / name) if not f.startswith("."))
        except OSError as err:
            raise _unreadable(os.fspath(split_dir / name), err) from None
        items.extend((label, f"{name}/{f}") for f in names)
    return items


def _digest(split_dir: Path, items: list[tuple[int, str]], entry) -> str:
    digest = hashlib.sha256(f"v{CACHE_VERSION}".encode())
    root = os.fspath(split_dir)
    for label, relative in items:
        digest.update(f"{label}\0{relative}\0".encode())
        digest.update(entry(os.path.join(root, relative)))
    return digest.hexdigest()[:16]


def _listing(path: str) -> bytes:
    try:
        st = os.stat(path)
    except OSError as err:
        raise _unreadable(path, err) from None
    return f"{st.st_size}:{st.st_mtime_ns}".encode()


def _content(path: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as err:
        raise _unreadable(path, err) from None


def _unreadable(path: str, err: OSError) -> DataError:
    """A dangling link, a link loop, a file the user may not read: the file and the OS's reason."""
    link = f" (a link to {os.readlink(path)!r})" if os.path.islink(path) else ""
    return DataError(
        f"{path!r}{link} cannot be read: {err.strerror or err}. Fix or remove that file, or point data.root at "
        "another copy of the dataset."
    )


def content_key(split_dir: Path, items: list[tuple[int, str]], cache_dir: Path) -> str:
    """sha256 of labels, relative paths and bytes; recalled from a listing fingerprint when that is unchanged."""
    memo = cache_dir / f"listing-{_digest(split_dir, items, _listing)}.key"
    if memo.exists():
        return memo.read_text().strip()
    key = _digest(split_dir, items, _content)
    atomic.write_text(memo, key)
    return key


def decode_png(path: Path) -> np.ndarray:
    """One image as uint8 `[28, 28]`; any PIL mode is converted to 8-bit gray, as fastai's PILImageBW does."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            if img.format != "PNG":
                raise DataError(f"{str(path)!r} is a {img.format} image, not a PNG.")
            if img.size != IMAGE_SIZE:
                raise DataError(
                    f"{str(path)!r} is {img.size[0]}x{img.size[1]} pixels; MNIST images are 28x28."
                )
            return np.asarray(img.convert("L"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(f"{str(path)!r} is not a readable PNG image ({err}).") from None


def load_split(
    split_dir: Path, class_names: tuple[str, ...], cache_dir: Path
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images `uint8 [N, 28, 28]` and labels `int64 [N]` of one split, from the cache when it is current."""
    items = list_images(split_dir, class_names)
    if not items:
        raise DataError(f"{str(split_dir)!r} holds no PNG images in class folders {', '.join(class_names)}.")
    cache_dir = Path(cache_dir)
    cache = (
        cache_dir / f"{split_dir.parent.name}-{split_dir.name}-{content_key(split_dir, items, cache_dir)}.pt"
    )
    if cache.exists():
        try:
            blob = torch.load(cache, weights_only=True)
            return blob["images"], blob["labels"]
        except (OSError, RuntimeError, KeyError, EOFError) as err:
            log.warning("ignoring unreadable cache %s (%s); decoding the PNGs again", cache, err)
    log.info("decoding %d PNGs in %s (once; cached as %s)", len(items), split_dir, cache.name)
    images = torch.from_numpy(np.stack([decode_png(split_dir / relative) for _, relative in items]))
    labels = torch.tensor([label for label, _ in items], dtype=torch.int64)
    # Atomic: a concurrent or interrupted run never sees half a cache file.
    atomic.write_atomically(cache, lambda file: torch.save({"images": images, "labels": labels}, file))
    return images, labels
