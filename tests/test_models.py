"""Every model trains through the same Trainer on synthetic data, logs the same metrics, and shows its pictures."""

from __future__ import annotations

import io
import urllib.error

import numpy as np
import pytest
import torch
from PIL import Image

from digitlab.api import run
from digitlab.errors import ConfigError
from digitlab.model.module import ClassifierModule
from digitlab.model.nets import linear, mlp
from digitlab.model.pixel_similarity import PixelSimilarity
from digitlab.model.resnet import resnet18
from tests.conftest import tiny_overrides
from tests.tb import load

EVERY_MODEL = [
    ["experiment=fastbook_baseline"],
    ["experiment=fastbook_baseline", "model.distance=l2"],
    ["experiment=fastbook_linear"],
    ["experiment=fastbook_mlp", "model.net.depth=2", "model.net.hidden=16"],
    ["experiment=fastbook_resnet18", "model.net.stem=gray"],
]


@pytest.mark.parametrize("overrides", EVERY_MODEL, ids=lambda o: " ".join(o))
def test_every_model_trains_and_logs_the_same_metrics(sample_root, tmp_path, overrides):
    metrics, _ = run(
        tiny_overrides(sample_root, tmp_path, *overrides, "trainer.max_epochs=1"), output_dir=tmp_path / "r"
    )
    # Logged under the same names by every model, and consistent with each other: the macro accuracy is the
    # mean of the per-class ones (the chapter's figure), the best epoch's at least the last one's.
    assert metrics["val/acc_macro"] == pytest.approx((metrics["val/acc_3"] + metrics["val/acc_7"]) / 2)
    assert metrics["val/acc_best"] >= metrics["val/acc"] and metrics["epochs"] == 1


@pytest.mark.parametrize("experiment", ["mnist_linear", "mnist_mlp", "mnist_resnet18"])
def test_ten_digit_experiments_train(mnist_root, tmp_path, experiment):
    overrides = tiny_overrides(mnist_root, tmp_path, f"experiment={experiment}", "trainer.max_epochs=1")
    metrics, _ = run(overrides, output_dir=tmp_path / "r")
    assert {f"val/acc_{d}" for d in range(10)} <= set(metrics)


def test_pixel_similarity_means_are_the_class_means(sample_root, tmp_path):
    metrics, run_dir = run(
        tiny_overrides(sample_root, tmp_path, "experiment=fastbook_baseline"), output_dir=tmp_path / "r"
    )
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    from digitlab.data import MnistSampleDataModule

    dm = MnistSampleDataModule(root=str(sample_root), data_dir=str(tmp_path / "data"), check_counts=False)
    dm.setup()
    images, labels = dm.train_set.images[:, 0], dm.train_set.labels
    expected = torch.stack([images[labels == c].mean(0) for c in (0, 1)])
    assert torch.allclose(state["class_means"], expected, atol=1e-6)
    assert metrics["val/acc"] == 1.0  # the synthetic classes differ by a bright bar: the means separate them
    assert metrics["epochs"] == 2 and "val/loss" not in metrics


def test_pixel_similarity_scores_nearest_mean():
    model = PixelSimilarity(distance="l1", class_names=("a", "b"))
    model.class_means.copy_(torch.stack([torch.zeros(28, 28), torch.ones(28, 28)]))
    images = torch.stack([torch.full((1, 28, 28), 0.2), torch.full((1, 28, 28), 0.9)])
    assert model.predict_labels(model(images)).tolist() == [0, 1]
    assert torch.allclose(model(images), -torch.tensor([[0.2, 0.8], [0.9, 0.1]]))
    with pytest.raises(ConfigError, match=r"distance='cosine' is invalid: it must be one of l1, l2"):
        PixelSimilarity(distance="cosine")


def test_net_output_width_follows_the_loss():
    from digitlab.loss import CrossEntropy, MnistLoss

    binary = ClassifierModule(net=linear, loss=MnistLoss(), optimizer=torch.optim.SGD, class_names=("7", "3"))
    assert binary(torch.rand(4, 1, 28, 28)).shape == (4,)
    multi = ClassifierModule(
        net=linear, loss=CrossEntropy(), optimizer=torch.optim.SGD, class_names=list("0123456789")
    )
    assert multi(torch.rand(4, 1, 28, 28)).shape == (4, 10)
    assert multi.probabilities(multi(torch.rand(4, 1, 28, 28))).sum(-1).allclose(torch.ones(4))


def test_mlp_shape_and_first_layer_picture():
    net = mlp(1, hidden=30, depth=2)
    assert [m.out_features for m in net if isinstance(m, torch.nn.Linear)] == [30, 30, 1]
    from digitlab.loss import MnistLoss

    model = ClassifierModule(
        net=lambda num_outputs: mlp(num_outputs), loss=MnistLoss(), optimizer=torch.optim.SGD
    )
    grid = model.pictures()["first_layer_weights"]
    assert grid.images.shape == (30, 1, 28, 28) and len(grid.captions) == 30
    assert torch.equal(
        grid.images[0, 0], model.net[1].weight[0].view(28, 28)
    )  # the chapter's w[0].view(28, 28)
    assert grid.title == "first layer: all hidden units' pixel weights" and grid.cmap == "bwr"
    wide = ClassifierModule(
        net=lambda num_outputs: mlp(num_outputs, hidden=64), loss=MnistLoss(), optimizer=torch.optim.SGD
    )
    assert wide.pictures()["first_layer_weights"].title == "first layer: 30 of 64 hidden units' pixel weights"
    linear_model = ClassifierModule(net=linear, loss=MnistLoss(), optimizer=torch.optim.SGD)
    weights = linear_model.pictures()["first_layer_weights"]
    # One logit, positive for the second class (7 vs 3: "3"): red pixels push towards 3.
    assert weights.legend == ("a bright pixel pushes towards 7", "towards 3") and weights.captions == [
        "3 vs 7"
    ]


def test_resnet18_gray_stem_computes_what_the_rgb_stem_computes():
    torch.manual_seed(0)
    rgb = resnet18(2, stem="rgb").eval()
    gray = resnet18(2, stem="gray").eval()
    state = {k.removeprefix("1."): v for k, v in rgb.state_dict().items()}
    state["conv1.weight"] = state["conv1.weight"].sum(1, keepdim=True)
    gray.load_state_dict(state)
    images = torch.rand(3, 1, 28, 28)
    assert torch.allclose(rgb(images), gray(images), atol=1e-5)
    with pytest.raises(ConfigError, match=r"stem='rgba' is invalid"):
        resnet18(2, stem="rgba")


@pytest.mark.parametrize("stem", ["rgb", "gray"])
def test_resnet18_channels_last_is_the_same_network(stem):
    torch.manual_seed(0)
    plain = resnet18(2, stem=stem).eval()
    nhwc = resnet18(2, stem=stem, channels_last=True).eval()
    assert nhwc.state_dict().keys() == plain.state_dict().keys()  # checkpoints load either way
    nhwc.load_state_dict(plain.state_dict())
    convs = [m for m in nhwc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    images = torch.rand(3, 1, 28, 28)
    assert torch.allclose(nhwc(images), plain(images), atol=1e-5)


def test_resnet18_pretrained_without_network_is_a_clear_error(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(
        ConfigError, match=r"model.net.pretrained=true needs torchvision's ImageNet weights from https://"
    ):
        resnet18(2, pretrained=True)


@pytest.mark.parametrize(
    ("experiment", "pictures"),
    [
        ("fastbook_baseline", {"ideal_digits", "confusion_matrix"}),
        ("fastbook_linear", {"first_layer_weights", "misclassified", "confusion_matrix"}),
        ("fastbook_mlp", {"first_layer_weights", "misclassified", "confusion_matrix"}),
        ("fastbook_resnet18", {"misclassified", "confusion_matrix"}),
    ],
)
def test_pictures_reach_tensorboard_and_png(sample_root, tmp_path, experiment, pictures):
    # A tiny learning rate and one epoch keep some validation images misclassified, so the grid is drawn.
    extra = [] if experiment == "fastbook_baseline" else ["optimizer.lr=1e-6"]
    overrides = tiny_overrides(
        sample_root, tmp_path, f"experiment={experiment}", "trainer.max_epochs=1", *extra
    )
    _, run_dir = run(overrides, output_dir=tmp_path / "r")
    events = load(run_dir)
    assert {f"pictures/{name}" for name in pictures} <= set(events.Tags()["images"])
    assert {f"{name}.png" for name in pictures} <= {p.name for p in (run_dir / "pictures").iterdir()}
    for name in pictures:  # the same picture in both places
        (event,) = events.Images(f"pictures/{name}")
        in_tensorboard = np.asarray(Image.open(io.BytesIO(event.encoded_image_string)).convert("RGB"))
        png = np.asarray(
            Image.open(run_dir / "pictures" / f"{name}.png").convert("RGB")
        )  # grey ones: 1 channel
        assert in_tensorboard.shape == png.shape and (in_tensorboard == png).all(), name
