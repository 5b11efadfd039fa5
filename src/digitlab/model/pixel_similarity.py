"""The chapter's baseline: the mean image of each class (the "ideal" 3 and 7), then the nearest mean wins.

"Training" is one pass over the training set summing images per class; there is no optimizer step. It
logs the same metrics as every other model (`val/acc`, `val/acc_3`, ...), so it sits in every comparison.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from digitlab.drawing import Grid
from digitlab.errors import ConfigError
from digitlab.model.module import DigitClassifier
from digitlab.settings import one_of, takes

# Distance between images over their last two (pixel) dimensions, as the chapter's mnist_distance.
DISTANCES = {
    "l1": lambda diff: diff.abs().mean((-1, -2)),
    "l2": lambda diff: diff.square().mean((-1, -2)).sqrt(),
}


@takes(distance=one_of(*DISTANCES))
class PixelSimilarity(DigitClassifier):
    """Nearest class mean by `distance`: `l1` = mean absolute difference (the chapter's `mnist_distance`),
    `l2` = root mean squared difference."""

    def __init__(self, distance: str = "l1", class_names: Sequence[str] = ("7", "3")) -> None:
        super().__init__(class_names, binary=False)
        self.distance = distance
        self.automatic_optimization = False  # nothing to optimize: the means are computed, not learned
        n = len(self.class_names)
        # float64 sums so the mean of 6000 images equals the chapter's `stacked.mean(0)` to float32 precision.
        self.register_buffer("sums", torch.zeros(n, 28, 28, dtype=torch.float64))
        self.register_buffer("counts", torch.zeros(n, dtype=torch.float64))
        self.register_buffer("class_means", torch.zeros(n, 28, 28))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Scores `[B, classes]`: minus the distance to each class mean (the nearest mean scores highest)."""
        diff = images[:, None, 0] - self.class_means[None]  # [B, classes, 28, 28]
        return -DISTANCES[self.distance](diff)

    def on_train_epoch_start(self) -> None:
        self.sums.zero_()
        self.counts.zero_()

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        images, labels = batch
        self.sums.index_add_(0, labels, images[:, 0].to(torch.float64))
        self.counts.index_add_(0, labels, torch.ones_like(labels, dtype=torch.float64))

    def on_validation_epoch_start(self) -> None:
        # Lightning validates before `on_train_epoch_end`, so the means of this epoch's pass are made here.
        # Before any training pass (sanity check) or when loaded from a checkpoint, the stored means stand.
        if self.counts.sum() == 0:
            return
        if (self.counts == 0).any():
            missing = [name for name, c in zip(self.class_names, self.counts.tolist(), strict=True) if c == 0]
            raise ConfigError(
                f"the training set has no images of class {', '.join(missing)}: no mean to compare to."
            )
        self.class_means.copy_((self.sums / self.counts[:, None, None]).to(self.class_means.dtype))

    def configure_optimizers(self) -> None:
        return None

    def pictures(self) -> dict[str, Grid]:
        """The ideal digits, as the chapter shows them with show_image."""
        captions = [f"mean {name}" for name in self.class_names]
        return {"ideal_digits": Grid(self.class_means[:, None], captions, "gray", "each digit's mean image")}
