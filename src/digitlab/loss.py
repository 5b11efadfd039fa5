"""Losses, selected by `conf/loss/`. Each says whether it reads one logit per image (`binary = True`, the
chapter's "probability of a 3") or one logit per class; `ClassifierModule` sizes the net's output from it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def mnist_loss(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The chapter's loss: how far the sigmoid of each prediction is from its 0/1 target, averaged.

    `predictions` are raw scores (logits) `[B]`; `targets` are 0/1 `[B]` with 1 meaning "a 3".
    """
    predictions = predictions.sigmoid()
    return torch.where(targets == 1, 1 - predictions, predictions).mean()


class MnistLoss(nn.Module):
    """`mnist_loss` as a module (binary only: it reads one logit per image)."""

    binary = True

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return mnist_loss(logits, targets)


class BinaryCrossEntropy(nn.Module):
    """Binary cross entropy on one logit per image: mnist_loss's log-likelihood cousin."""

    binary = True

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype))


class CrossEntropy(nn.CrossEntropyLoss):
    """Cross entropy on one logit per class (any number of classes)."""

    binary = False
