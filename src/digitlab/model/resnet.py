"""torchvision's resnet18 for 28x28 digits, trained from scratch (or from ImageNet weights, if reachable).

`stem`: `rgb` feeds the gray image repeated to 3 channels, as fastai does (its images open as RGB);
`gray` swaps the first convolution for a 1-channel one: the same network, a third of the stem's work.
`channels_last`: weights and activations in NHWC order, which GPU convolutions (tensor cores, bf16) run
faster; the same math, and on this project's CPU no faster (about 130 ms per batch of 64 either way).
"""

from __future__ import annotations

import torch
from torch import nn

from digitlab.errors import ConfigError
from digitlab.settings import BOOLEAN, one_of, takes, whole

STEMS = ("rgb", "gray")


class GrayToRgb(nn.Module):
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.expand(-1, 3, -1, -1)


def _to_channels_last(module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return (args[0].contiguous(memory_format=torch.channels_last), *args[1:])


@takes(num_outputs=whole(1), stem=one_of(*STEMS), pretrained=BOOLEAN, channels_last=BOOLEAN)
def resnet18(
    num_outputs: int, stem: str = "rgb", pretrained: bool = False, channels_last: bool = False
) -> nn.Module:
    from torchvision.models import ResNet18_Weights
    from torchvision.models import resnet18 as torchvision_resnet18

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
    if channels_last:
        # A pre-hook rather than a layer: the state dict keeps the names an NCHW run's checkpoints have.
        net.to(memory_format=torch.channels_last).register_forward_pre_hook(_to_channels_last)
    if stem == "rgb":
        return nn.Sequential(GrayToRgb(), net)
    rgb_conv = net.conv1
    net.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    with torch.no_grad():
        # On a gray image repeated to RGB, the RGB filters act as their sum: with summed filters the 1-channel
        # stem computes exactly what the rgb stem computes (from scratch and pretrained alike).
        net.conv1.weight.copy_(rgb_conv.weight.sum(dim=1, keepdim=True))
    if channels_last:
        net.conv1.to(memory_format=torch.channels_last)
    return net
