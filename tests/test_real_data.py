"""On the real MNIST_SAMPLE (built in data/ on first use, offline if need be): the chapter's numbers."""

from __future__ import annotations

import pytest

from digitlab.api import run
from digitlab.data import MnistSampleDataModule

pytestmark = pytest.mark.real_data


@pytest.fixture(scope="module")
def real_sample(real_data_dir) -> MnistSampleDataModule:
    dm = MnistSampleDataModule(data_dir=str(real_data_dir))
    dm.prepare_data()
    dm.setup()
    return dm


def test_real_sample_has_the_chapters_counts(real_sample):
    labels = real_sample.train_set.labels
    assert (labels == 1).sum() == 6131 and (labels == 0).sum() == 6265  # 3s, 7s
    valid = real_sample.valid_set.labels
    assert (valid == 1).sum() == 1010 and (valid == 0).sum() == 1028


def test_pixel_similarity_gives_the_chapters_numbers(real_sample):
    # The chapter: mean 3 and mean 7 of the training set, L1 distance, is_3 = dist(x, mean3) < dist(x, mean7).
    train, valid = real_sample.train_set, real_sample.valid_set
    mean3 = train.images[train.labels == 1].mean(0)
    mean7 = train.images[train.labels == 0].mean(0)

    def distance(a, b):
        return (a - b).abs().mean((-1, -2))

    is_3 = (distance(valid.images, mean3) < distance(valid.images, mean7)).flatten()
    acc_3 = is_3[valid.labels == 1].float().mean().item()
    acc_7 = 1 - is_3[valid.labels == 0].float().mean().item()
    assert round(acc_3, 4) == 0.9168 and round(acc_7, 4) == 0.9854 and round((acc_3 + acc_7) / 2, 4) == 0.9511


def train_real(experiment: str, real_data_dir, tmp_path) -> dict:
    overrides = [
        f"experiment={experiment}",
        f"paths.data_dir={real_data_dir}",
        f"paths.log_dir={tmp_path}",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
    ]
    metrics, _ = run(overrides, output_dir=tmp_path / "run")
    return metrics


def test_baseline_model_gives_the_chapters_numbers_exactly(real_sample, real_data_dir, tmp_path):
    metrics = train_real("fastbook_baseline", real_data_dir, tmp_path)
    assert round(metrics["val/acc_3"], 4) == 0.9168
    assert round(metrics["val/acc_7"], 4) == 0.9854
    assert round(metrics["val/acc_macro"], 4) == 0.9511  # the chapter's (accuracy_3s + accuracy_7s) / 2


def test_linear_model_reaches_the_chapters_accuracy(real_sample, real_data_dir, tmp_path):
    metrics = train_real("fastbook_linear", real_data_dir, tmp_path)
    assert metrics["epochs"] == 20
    assert metrics["val/acc"] >= 0.96, metrics


def test_mlp_reaches_the_chapters_accuracy(real_sample, real_data_dir, tmp_path):
    metrics = train_real("fastbook_mlp", real_data_dir, tmp_path)
    assert metrics["epochs"] == 40
    assert metrics["val/acc"] >= 0.98, metrics


@pytest.mark.slow
def test_resnet18_reaches_the_chapters_accuracy(real_sample, real_data_dir, tmp_path):
    metrics = train_real("fastbook_resnet18", real_data_dir, tmp_path)
    assert metrics["epochs"] == 1
    assert metrics["val/acc"] >= 0.99, metrics
