"""On the real MNIST_SAMPLE (built in data/ on first use, offline if need be): the chapter's numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

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


@pytest.fixture(scope="module")
def trained_mlp(real_sample, real_data_dir, tmp_path_factory) -> tuple[dict, Path]:
    tmp = tmp_path_factory.mktemp("mlp")
    return train_real("fastbook_mlp", real_data_dir, tmp), tmp / "run"


def test_mlp_reaches_the_chapters_accuracy(trained_mlp):
    metrics, _ = trained_mlp
    assert metrics["epochs"] == 40
    assert metrics["val/acc"] >= 0.98, metrics


def test_predict_reads_a_drawing_as_mnist_framed_its_digits(real_sample, trained_mlp, tmp_path, capsys):
    """Validation digits drawn large, off-centre, in non-square canvases (half of them dark on light paper):
    predict frames each as MNIST framed its digits (ink into 20x20, centred by mass) and gets them right as
    often as the 28x28 originals, within one point, saying what it did."""
    from digitlab.cli.predict import main as predict_main

    _, run_dir = trained_mlp
    valid = real_sample.valid_set
    rng = np.random.default_rng(0)
    picked = [int(i) for i in rng.choice(len(valid.labels), size=200, replace=False)]
    canvases = [(120, 90), (90, 160), (300, 200), (64, 64)]
    for n, index in enumerate(picked):
        digit = valid.images[index].squeeze().numpy()
        if digit.dtype != np.uint8:
            digit = (digit * 255).round().astype(np.uint8) if digit.max() <= 1 else digit.astype(np.uint8)
        label = "3" if int(valid.labels[index]) == 1 else "7"
        (tmp_path / "original").mkdir(exist_ok=True)
        Image.fromarray(digit).save(tmp_path / "original" / f"{n}_{label}.png")
        rows, cols = np.nonzero(digit)
        ink = Image.fromarray(digit[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1])
        width, height = canvases[n % len(canvases)]
        scale = rng.uniform(0.4, 0.8) * min(width / ink.width, height / ink.height)
        ink = ink.resize((max(1, round(ink.width * scale)), max(1, round(ink.height * scale))))
        canvas = Image.new("L", (width, height))
        canvas.paste(
            ink, (int(rng.integers(0, width - ink.width + 1)), int(rng.integers(0, height - ink.height + 1)))
        )
        if n % 2:
            canvas = Image.fromarray(255 - np.asarray(canvas))  # a dark digit on light paper
        (tmp_path / "drawn").mkdir(exist_ok=True)
        canvas.save(tmp_path / "drawn" / f"{n}_{label}.png")

    def accuracy(folder: str) -> tuple[float, str]:
        assert (
            predict_main([f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}", str(tmp_path / folder)]) == 0
        )
        out, err = capsys.readouterr()
        lines = [line.split("\t") for line in out.strip().splitlines()]
        right = [Path(path).stem.split("_")[1] == digit for path, digit, _ in lines]
        return sum(right) / len(right), err

    original, said = accuracy("original")
    assert "centred by mass" not in said  # a 28x28 image is already framed
    drawn, said = accuracy("drawn")
    assert drawn >= original - 0.01, (drawn, original)
    assert "120x90: its ink fitted into 20x20 and centred by mass in 28x28" in said
    assert "dark on light: inverted" in said


@pytest.mark.slow
def test_resnet18_reaches_the_chapters_accuracy(real_sample, real_data_dir, tmp_path):
    metrics = train_real("fastbook_resnet18", real_data_dir, tmp_path)
    assert metrics["epochs"] == 1
    assert metrics["val/acc"] >= 0.99, metrics
