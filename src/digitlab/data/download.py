"""fastai's archives over HTTP: streamed to a temporary folder, checked as fastai checks them, extracted, and
renamed into place, so an interrupted download never leaves a half-written dataset behind.

fastai's check (fastdownload's `path_stats`, read against its `checks.txt`) is the archive's size and the
md5 of its first megabyte (`hashlib.md5(f.read(2**20))`), not of the whole file: `Layout.md5` holds that.
Kept rather than torchvision's `download_and_extract_archive`, which checks the whole file's md5 (fastai
publishes only its first megabyte's) and extracts in place (a kill leaves half a dataset).
"""

from __future__ import annotations

import hashlib
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from digitlab.data.layouts import Layout
from digitlab.errors import DataError

CHECKED_BYTES = 2**20  # fastai hashes the first MiB of an archive


def fastai_md5(path: Path) -> str:
    """md5 of the file's first megabyte: fastdownload's `path_stats` hash."""
    with open(path, "rb") as f:
        return hashlib.md5(f.read(CHECKED_BYTES), usedforsecurity=False).hexdigest()


def fetch_archive(layout: Layout, url: str, target: Path, timeout: float) -> None:
    """Download `layout`'s archive from `url`, check it, extract it to `target` (atomically)."""
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
    """Stream `url` to `dest`, then check its size and fastai's md5 (of the first MiB); DataError if not."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(dest, "wb") as out:
            while chunk := response.read(1 << 20):
                out.write(chunk)
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        raise DataError(f"{url!r} is unreachable ({reason}; timeout {timeout} s)") from None
    got_size = dest.stat().st_size
    if size is not None and got_size != size:
        raise DataError(
            f"{url!r} sent {got_size} bytes; expected {size} (an incomplete or different archive)"
        )
    if md5 is not None and (got := fastai_md5(dest)) != md5:
        raise DataError(
            f"checksum mismatch for {url!r}: md5 of its first MiB {got}, expected {md5} (fastai's check)"
        )
    return dest
