"""torchvision's resnet18 for 28x28 digits, trained from scratch (or from ImageNet weights, if reachable).

`stem`: `rgb` feeds the gray image repeated to 3 channels, as fastai does (its images open as RGB);
`gray` swaps the first convolution for a 1-channel one: the same network, a third of the stem's work.
"""

from __future__ import annotations

import torch
from torch import nn

from digitlab.errors import ConfigError

STEMS = ("rgb", "gray")


class GrayToRgb(nn.Module):
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.expand(-1, 3, -1, -1)


def resnet18(num_outputs: int, stem: str = "rgb", pretrained: bool = False) -> nn.Module:
    from torchvision.models import ResNet18_Weights
    from torchvision.models import resnet18 as torchvision_resnet18

    if stem not in STEMS:
        raise ConfigError(f"model.net.stem={stem!r} is invalid: it must be one of {', '.join(STEMS)}.")
    if pretrained:
        weights = ResNet18_Weights.IMAGENET1K_V1
        try:
            net = torchvision_resnet18(weights=weights)
        except Exception as err:  # any failure to fetch or read the file means the same to the user
            raise ConfigError(
                f"model.net.pretrained=true needs torchvision's ImageNet weights from {weights.url}, which could "
                f"not be fetched ({type(err).__name__}: {err}). Train from scratch with model.net.pretrained=false, "
                f"or put the file in {torch.hub.get_dir()}/checkpoints/."
            ) from None
        net.fc = nn.Linear(net.fc.in_features, num_outputs)
    else:
        net = torchvision_resnet18(weights=None, num_classes=num_outputs)
    if stem == "rgb":
        return nn.Sequential(GrayToRgb(), net)
    rgb_conv = net.conv1
    net.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    with torch.no_grad():
        # On a gray image repeated to RGB, the RGB filters act as their sum: with summed filters the 1-channel
        # stem computes exactly what the rgb stem computes (from scratch and pretrained alike).
        net.conv1.weight.copy_(rgb_conv.weight.sum(dim=1, keepdim=True))
    return net
