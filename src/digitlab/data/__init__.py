"""Data: where MNIST comes from (sources), PNG folders as tensors (images), and the datamodules."""

from digitlab.data.datamodules import MnistDataModule, MnistSampleDataModule

__all__ = ["MnistDataModule", "MnistSampleDataModule"]
