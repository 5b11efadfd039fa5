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


def test_linear_model_reaches_the_chapters_accuracy(real_sample, real_data_dir, tmp_path):
    metrics, _ = run(
        [
            f"paths.data_dir={real_data_dir}",
            f"paths.log_dir={tmp_path}",
            "+trainer.enable_progress_bar=false",
        ],
        output_dir=tmp_path / "run",
    )
    assert metrics["epochs"] == 20
    assert metrics["val/acc"] >= 0.96, metrics
