"""Datamodules and the PNG loader on tiny synthetic folders in the real layout; each bad input's message."""

from __future__ import annotations

import hashlib
import itertools
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, DistributedSampler, SequentialSampler

from digitlab.data import MnistDataModule, MnistSampleDataModule
from digitlab.data.datamodules import IndexBatchSampler, TensorBatches, keep_batch
from digitlab.data.folders import prepare_folder
from digitlab.data.layouts import MNIST_SAMPLE
from digitlab.errors import DataError
from tests.conftest import cli


def tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def sample_dm(root, tmp_path, **kwargs) -> MnistSampleDataModule:
    return MnistSampleDataModule(
        root=str(root), data_dir=str(tmp_path / "data"), check_counts=False, **kwargs
    )


def test_sample_batches_are_float_images_in_unit_range(sample_root, tmp_path):
    before = tree_digest(sample_root)
    dm = sample_dm(sample_root, tmp_path, batch_size=32)
    dm.prepare_data()
    dm.setup("fit")
    assert dm.source == "root"
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (32, 1, 28, 28) and images.dtype == torch.float32
    assert images.min() >= 0.0 and images.max() <= 1.0 and images.max() == 1.0
    assert labels.dtype == torch.int64
    assert len(dm.train_set) == 96 and len(dm.valid_set) == 32
    # label 1 is "3" (the chapter's target), label 0 is "7": the synthetic bar sits at row 2 + 2 * digit.
    assert dm.class_names == ("7", "3")
    threes = dm.train_set.images[dm.train_set.labels == 1]
    assert threes[:, 0, 8:11, 4:24].mean() == 1.0
    assert tree_digest(sample_root) == before, "the user's folder must never be modified"


def test_shuffle_is_seeded(sample_root, tmp_path):
    def first_labels(seed):
        dm = sample_dm(sample_root, tmp_path, batch_size=8, seed=seed)
        dm.setup()
        return [labels.tolist() for _, labels in dm.train_dataloader()]

    assert first_labels(0) == first_labels(0)
    assert first_labels(0) != first_labels(1)


def test_valid_batches_are_in_order_and_complete(sample_root, tmp_path):
    dm = sample_dm(sample_root, tmp_path, batch_size=10)
    dm.setup()
    labels = torch.cat([y for _, y in dm.val_dataloader()])
    assert torch.equal(labels, dm.valid_set.labels)


@pytest.mark.parametrize("batch_size", [10, 8])  # 96 images: a partial last batch, or none
@pytest.mark.parametrize("stop_at_len", [False, True])  # Lightning stops after len(loader) batches
def test_index_batches_match_pytorch_batching(sample_root, tmp_path, batch_size, stop_at_len):
    """Same shuffled order, batch for batch and epoch after epoch, as DataLoader(shuffle=True) with the same
    generator: the fast path changes no result."""
    dm = sample_dm(sample_root, tmp_path, batch_size=batch_size, seed=3)
    dm.setup()
    generator = torch.Generator().manual_seed(3)
    plain = DataLoader(
        dm.train_set, batch_size=batch_size, shuffle=True, generator=generator, collate_fn=keep_batch
    )
    ours = dm.train_dataloader()
    assert len(ours) == len(plain) == -(-96 // batch_size)

    def epoch(loader):
        batches = iter(loader)
        if stop_at_len:
            batches = itertools.islice(batches, len(loader))
        return [labels for _, labels in batches]

    for n in range(3):
        expected, got = epoch(plain), epoch(ours)
        assert [len(b) for b in got] == [len(b) for b in expected], n
        assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True)), n
    images, _ = next(iter(dm.val_dataloader()))
    images.zero_()  # a batch is a copy: a model editing its input in place leaves the data alone
    assert dm.valid_set.images[: len(images)].max() == 1.0


@pytest.mark.parametrize("drop_last", [False, True])
def test_index_batches_from_any_sampler(drop_last):
    """Under DDP Lightning rebuilds the batch sampler around a DistributedSampler: each rank gets its own
    indices, batched."""
    data = TensorBatches(torch.arange(25.0).view(25, 1), torch.arange(25))
    ranks = [
        IndexBatchSampler(DistributedSampler(data, num_replicas=2, rank=r, shuffle=False), 4, drop_last)
        for r in (0, 1)
    ]
    seen = [torch.cat([data.__getitems__(b)[1] for b in sampler]) for sampler in ranks]
    assert [len(b) for b in ranks[0]] == ([4, 4, 4] if drop_last else [4, 4, 4, 1])
    assert len(list(ranks[0])) == len(ranks[0])
    if not drop_last:
        assert set(torch.cat(seen).tolist()) == set(range(25))
    sequential = IndexBatchSampler(SequentialSampler(data), 10, drop_last)
    assert [data.__getitems__(b)[1].tolist() for b in sequential] == [
        list(range(0, 10)),
        list(range(10, 20)),
        *([] if drop_last else [list(range(20, 25))]),
    ]
    assert len(list(sequential)) == len(sequential)


@pytest.mark.parametrize("resident", [True, False])
def test_data_moves_to_the_training_device_once(sample_root, tmp_path, resident):
    """On a GPU the splits live on the device and every batch is gathered there. Without a GPU the "meta"
    device stands in for one: the same code path, no data."""
    dm = sample_dm(sample_root, tmp_path, batch_size=32, device_resident=resident)
    dm.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("meta")))
    dm.setup("fit")
    expected = "meta" if resident else "cpu"
    assert dm.train_set.images.device.type == dm.valid_set.labels.device.type == expected
    images, labels = next(iter(dm.train_dataloader()))
    assert images.device.type == labels.device.type == expected and images.shape == (32, 1, 28, 28)
    images, _ = next(iter(dm.val_dataloader()))
    assert images.device.type == expected


def test_mnist_has_ten_classes(mnist_root, tmp_path):
    dm = MnistDataModule(root=str(mnist_root), data_dir=str(tmp_path / "d"), check_counts=False, batch_size=7)
    dm.setup()
    assert dm.num_classes == 10 and dm.class_names == tuple("0123456789")
    assert sorted(dm.train_set.labels.unique().tolist()) == list(range(10))
    assert len(dm.valid_set) == 40


def test_decoded_split_is_cached_and_key_follows_content(sample_root, tmp_path):
    copy = tmp_path / "mnist_sample"
    shutil.copytree(sample_root, copy)
    cache = tmp_path / "data" / "cache"
    sample_dm(copy, tmp_path).setup()
    first = sorted(p.name for p in cache.glob("*.pt"))
    assert len(first) == 2
    # A second run loads the cache: make decoding impossible and it must still work.
    import digitlab.data.images as images

    real_decode = images.decode_png
    images.decode_png = None
    try:
        sample_dm(copy, tmp_path).setup()
    finally:
        images.decode_png = real_decode
    # Editing one image changes the content key: a new cache file is made, with the new pixels.
    victim = next((copy / "valid" / "3").glob("*.png"))
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(victim)
    dm = sample_dm(copy, tmp_path)
    dm.setup()
    assert len(list(cache.glob("*.pt"))) == 3
    assert (dm.valid_set.images.flatten(1).amax(1) == 0).sum() == 1


@pytest.fixture
def broken(sample_root, tmp_path) -> Path:
    copy = tmp_path / "broken" / "mnist_sample"
    shutil.copytree(sample_root, copy)
    return copy


def expect_error(root, tmp_path, match, check_counts=False):
    before = tree_digest(root)
    dm = MnistSampleDataModule(root=str(root), data_dir=str(tmp_path / "data"), check_counts=check_counts)
    with pytest.raises(DataError, match=match) as info:
        dm.prepare_data()
        dm.setup()
    assert tree_digest(root) == before, "a failed check must leave the user's files untouched"
    return str(info.value)


def test_missing_root(tmp_path):
    from digitlab.errors import ConfigError

    # Refused by the datamodule's own rule, before anything is read; composed, it is named data.root.
    with pytest.raises(ConfigError, match=r"root='.*nope' is invalid: it must be null or an existing folder"):
        MnistSampleDataModule(root=str(tmp_path / "nope"), data_dir=str(tmp_path))
    (tmp_path / "a_file").write_text("")
    with pytest.raises(DataError, match="does not exist or is not a folder") as info:
        prepare_folder(
            MNIST_SAMPLE, root=tmp_path / "a_file", data_dir=tmp_path, url=None, timeout=1, offline=None
        )
    assert str(info.value).startswith(f"data.root={str(tmp_path / 'a_file')!r}")  # what was typed


def test_missing_class_folder(broken, tmp_path):
    shutil.rmtree(broken / "valid" / "7")
    message = expect_error(broken, tmp_path, "incomplete")
    assert str(broken / "valid" / "7") in message and message.startswith(f"data.root={str(broken)!r}")


def test_wrong_count(broken, tmp_path):
    message = expect_error(
        broken, tmp_path, "train.7. holds 48 PNGs; mnist_sample has 6265 there", check_counts=True
    )
    assert "check_counts=false" in message


def test_non_png_file(broken, tmp_path):
    (broken / "train" / "3" / "notes.txt").write_text("hello")
    expect_error(broken, tmp_path, "notes.txt' is not a PNG file")


def test_corrupt_png(broken, tmp_path):
    victim = next((broken / "train" / "7").glob("*.png"))
    victim.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    message = expect_error(broken, tmp_path, "is not a readable PNG image")
    assert victim.name in message


def test_image_of_wrong_size(broken, tmp_path):
    victim = next((broken / "valid" / "3").glob("*.png"))
    Image.fromarray(np.zeros((32, 30), np.uint8)).save(victim)
    expect_error(broken, tmp_path, r"is 30x32 pixels; MNIST images are 28x28")


def test_jpeg_disguised_as_png(broken, tmp_path):
    victim = next((broken / "valid" / "3").glob("*.png"))
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(victim, format="JPEG")
    expect_error(broken, tmp_path, "is a JPEG image, not a PNG")


MODES_A_USER_SAVES = [
    ("16-bit gray", lambda a: Image.fromarray(a.astype(np.uint16) * 257)),
    ("palette", lambda a: Image.fromarray(a).convert("P")),
    ("RGB", lambda a: Image.fromarray(np.stack([a] * 3, -1))),
    ("RGBA", lambda a: Image.fromarray(np.stack([a] * 3 + [np.full_like(a, 255)], -1))),
    ("1-bit", lambda a: Image.fromarray(a >= 128)),
]


@pytest.mark.parametrize(("mode", "make"), MODES_A_USER_SAVES)
def test_images_a_user_would_call_valid_decode_to_the_same_gray_levels(mode, make, tmp_path):
    """fastai's PILImageBW reads any mode as 8-bit gray; a 16-bit PNG is scaled to it, never clipped."""
    from digitlab.data.images import decode_png

    gray = np.arange(28 * 28, dtype=np.int64).reshape(28, 28) % 256
    if mode == "1-bit":
        gray = np.where(gray >= 128, 255, 0)
    path = tmp_path / "digit.png"
    make(gray.astype(np.uint8)).save(path)
    assert np.array_equal(decode_png(path), gray.astype(np.uint8)), mode


@pytest.mark.parametrize(
    ("mode", "make"), [*MODES_A_USER_SAVES, ("CMYK", lambda a: Image.fromarray(a).convert("CMYK"))]
)
def test_predict_reads_an_image_as_training_does(mode, make, tmp_path):
    """One decoding for both: a 16-bit PNG scaled (not clipped), palette, RGB(A), CMYK, 1-bit."""
    from digitlab.cli.predict import to_mnist_format
    from digitlab.data.images import decode_png, gray8

    gray = (np.arange(28 * 28, dtype=np.int64).reshape(28, 28) % 256).astype(np.uint8)
    image = make(gray)
    path = tmp_path / ("digit.tif" if mode == "CMYK" else "digit.png")  # PNG holds no CMYK
    image.save(path)
    trained = decode_png(path) if mode != "CMYK" else gray8(Image.open(path))
    predicted = to_mnist_format(path, invert="false")
    assert np.abs(predicted * 255 - trained).max() < 1e-3, mode


def test_bad_batch_size(tmp_path):
    from digitlab.errors import ConfigError

    # Called directly, the constructor names its argument; composed, the check names the config key.
    with pytest.raises(ConfigError, match=r"batch_size=0 is invalid: it must be a whole number >= 1"):
        MnistSampleDataModule(data_dir=str(tmp_path), batch_size=0)


def test_cli_reports_a_broken_folder_before_any_work(tmp_path):

    (tmp_path / "mnist_sample" / "train" / "3").mkdir(parents=True)
    proc = cli(
        f"data.root={tmp_path / 'mnist_sample'}",
        f"paths.log_dir={tmp_path / 'logs'}",
        cwd=tmp_path,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "Traceback" not in output
    assert "class folder" in output and "train/7' is missing" in output
    assert not list((tmp_path / "logs").rglob("*.ckpt")), "no checkpoint for a run that never trained"


@pytest.mark.parametrize("damage", ["dangling link", "link loop"])
def test_a_broken_link_in_the_data_folder_is_one_paragraph_naming_it(sample_root, tmp_path, damage):
    import shutil

    from digitlab.errors import DataError

    root = tmp_path / "mnist_sample"
    shutil.copytree(sample_root, root)
    broken = root / "train" / "3" / "broken.png"
    if damage == "dangling link":
        broken.symlink_to(tmp_path / "gone.png")
    else:
        broken.symlink_to(broken)
    module = MnistSampleDataModule(root=str(root), data_dir=str(tmp_path / "data"), check_counts=False)
    with pytest.raises(DataError, match=r"broken.png' \(a link to .*\) cannot be read"):
        module.prepare_data()
        module.setup("fit")
