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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

import digitlab.atomic as atomic
from digitlab.errors import DataError

log = logging.getLogger(__name__)

IMAGE_SIZE = (28, 28)
# How PIL opens a 16-bit grayscale PNG (a 16-bit RGB one it opens as 8-bit RGB itself).
SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I")
CACHE_VERSION = 2  # bump when the cached format or the decoding changes (2: transparency composited)


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


def content_key(split_dir: Path, items: list[tuple[int, str]], cache_dir: Path) -> tuple[str, Path]:
    """sha256 of labels, relative paths and bytes, recalled from a listing fingerprint when that is unchanged;
    and the fingerprint's memo file (`load_splits` writes it once every split has decoded: a folder with a
    bad image leaves nothing in the cache)."""
    memo = cache_dir / f"listing-{_digest(split_dir, items, _listing)}.key"
    if memo.exists():
        return memo.read_text().strip(), memo
    return _digest(split_dir, items, _content), memo


def gray8(img: Any, transparent: int = 0) -> np.ndarray:
    """Any PIL image as uint8 gray, the one decoding that training images and predict's inputs share, as
    fastai's PILImageBW reads them: 16-bit gray scaled to 8 bits (PIL's `convert("L")` would clip it);
    palette, RGB, CMYK and 1-bit through PIL's own conversion; transparency composited over the gray level
    `transparent`: 0 for a training image (no ink, MNIST's black), 255 for a drawing given to predict (its
    paper, which predict then inverts with the rest)."""
    from PIL import Image

    if img.mode in SIXTEEN_BIT:  # 0..65535
        return (np.asarray(img, dtype=np.float64) / 257.0).round().clip(0, 255).astype(np.uint8)
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in img.info:
        background = Image.new("RGBA", img.size, (transparent, transparent, transparent, 255))
        img = Image.alpha_composite(background, img.convert("RGBA"))
    return np.asarray(img.convert("L"), dtype=np.uint8)


def decode_png(path: Path) -> np.ndarray:
    """One training image as uint8 `[28, 28]` (`gray8`)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            if img.format != "PNG":
                raise DataError(f"{str(path)!r} is a {img.format} image, not a PNG.")
            if img.size != IMAGE_SIZE:
                raise DataError(
                    f"{str(path)!r} is {img.size[0]}x{img.size[1]} pixels; MNIST images are 28x28."
                )
            return gray8(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(f"{str(path)!r} is not a readable PNG image ({err}).") from None


# Splits decoded by a check (`write=False`) in this process, by cache file: the run that follows in the same
# process caches them without decoding again.
_checked: dict[Path, tuple[torch.Tensor, torch.Tensor]] = {}


def load_splits(
    split_dirs: dict[str, Path], class_names: tuple[str, ...], cache_dir: Path, write: bool = True
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per split, images `uint8 [N, 28, 28]` and labels `int64 [N]`, from the cache when it is current. The
    splits decoded are cached once every split has decoded (a dataset with one bad image leaves nothing),
    and only with `write`: a check before any folder is made writes nothing, not even the cache."""
    loaded, pending = {}, []
    for split, split_dir in split_dirs.items():
        images, labels, writes = _load_split(split_dir, class_names, Path(cache_dir), write)
        loaded[split] = (images, labels)
        pending += writes
    for save in pending if write else ():
        save()
    return loaded


def _load_split(
    split_dir: Path, class_names: tuple[str, ...], cache_dir: Path, write: bool
) -> tuple[torch.Tensor, torch.Tensor, list[Callable[[], None]]]:
    """One split's images and labels, and the cache files still to write for it."""
    items = list_images(split_dir, class_names)
    if not items:
        raise DataError(f"{str(split_dir)!r} holds no PNG images in class folders {', '.join(class_names)}.")
    key, memo = content_key(split_dir, items, cache_dir)
    remember = [] if memo.exists() else [lambda: atomic.write_text(memo, key)]
    cache = cache_dir / f"{split_dir.parent.name}-{split_dir.name}-{key}.pt"
    if cache.exists():
        try:
            blob = torch.load(cache, weights_only=True)
            return blob["images"], blob["labels"], remember
        except (OSError, RuntimeError, KeyError, EOFError) as err:
            log.warning("ignoring unreadable cache %s (%s); decoding the PNGs again", cache, err)
    if cache in _checked:
        images, labels = _checked.pop(cache) if write else _checked[cache]
    else:
        log.info("decoding %d PNGs in %s (once; cached as %s)", len(items), split_dir, cache.name)
        images = torch.from_numpy(np.stack([decode_png(split_dir / relative) for _, relative in items]))
        labels = torch.tensor([label for label, _ in items], dtype=torch.int64)
        if not write:
            _checked[cache] = images, labels
    # Atomic: a concurrent or interrupted run never sees half a cache file.
    save = lambda: atomic.write_atomically(  # noqa: E731
        cache, lambda file: torch.save({"images": images, "labels": labels}, file)
    )
    return images, labels, [save, *remember]
