"""Pictures in TensorBoard, what the chapter shows with show_image: the model's own pictures (the ideal
digits of the baseline, the first layer's weights of linear and MLP, with a colour bar saying what each
colour means), the misclassified validation images with the highest loss first (fastai's
`plot_top_losses`: each captioned with its true and predicted digit and the model's confidence in its
prediction), and the confusion matrix.

Validation batches are kept as tensors (no host sync per step); pictures are drawn (`drawing.py`) when fit
ends, from the last validation, and every `every_n_epochs` if set. Each also lands as a PNG in
`<run>/pictures/`.
"""

from __future__ import annotations

import io
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from digitlab.event_files import add_summary
from digitlab.rundir import Run
from digitlab.settings import takes, whole


@takes(max_misclassified=whole(0), every_n_epochs=whole(0))
class Pictures(L.Callback):
    def __init__(
        self, output_dir: str | Path | None = None, max_misclassified: int = 36, every_n_epochs: int = 0
    ):
        """
        Args:
            output_dir: where the PNGs go (a `pictures/` folder is made there); None: TensorBoard only.
            max_misclassified: how many misclassified validation images the grid shows.
            every_n_epochs: also draw every n epochs (0: only when fit ends).
        """
        self.output_dir = Run(output_dir).pictures if output_dir is not None else None
        self.max_misclassified = max_misclassified
        self.every_n_epochs = every_n_epochs
        self._batches: list[tuple[torch.Tensor, ...]] = []
        self._drawn_step: int | None = None

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._batches = []

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        if trainer.sanity_checking or not isinstance(outputs, dict) or "preds" not in outputs:
            return
        images, labels = batch
        self._batches.append((images, labels, outputs["preds"], outputs["scores"]))

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not self.every_n_epochs:
            return
        if (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self.draw(trainer, pl_module)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._drawn_step != trainer.global_step:
            self.draw(trainer, pl_module)

    def draw(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_rank != 0:
            return
        last = None
        if self._batches:
            last = tuple(torch.cat([b[i] for b in self._batches]).cpu() for i in range(4))
        pictures = draw_pictures(pl_module, last, self.max_misclassified)
        save_pictures(pictures, trainer.loggers, trainer.global_step, self.output_dir)
        self._drawn_step = trainer.global_step


def draw_pictures(
    module: L.LightningModule, validation: tuple[torch.Tensor, ...] | None, max_misclassified: int
):
    """name -> RGB array: the module's own pictures, and from the last validation's `(images, labels,
    predictions, scores)` the misclassified images (highest loss first) and the confusion matrix."""
    from torchmetrics.functional.classification import multiclass_confusion_matrix

    from digitlab.drawing import confusion_image, image_grid

    names = list(module.class_names)
    pictures = {name: grid.draw() for name, grid in module.pictures().items()}
    if validation is not None:
        images, labels, preds, scores = validation
        probabilities = module.probabilities(scores.float())
        wrong = (preds != labels).nonzero().flatten()
        # The loss a misclassified image costs grows as the model's belief in its true digit falls.
        wrong = wrong[probabilities[wrong, labels[wrong]].argsort()][:max_misclassified]
        if len(wrong):
            captions = [
                f"{names[labels[i]]} / {names[preds[i]]}  {probabilities[i, preds[i]]:.0%}"
                for i in wrong.tolist()
            ]
            title = f"misclassified, highest loss first: {len(wrong)} of {int((preds != labels).sum())}"
            title += " (true / predicted, confidence)"
            pictures["misclassified"] = image_grid(images[wrong], captions, cmap="gray", title=title)
        matrix = multiclass_confusion_matrix(preds, labels, num_classes=len(names))
        pictures["confusion_matrix"] = confusion_image(matrix.numpy(), names)
    return pictures


def save_pictures(pictures: dict, loggers: list, step: int, output_dir: Path | None) -> None:
    """Into every TensorBoard logger's event file at `step`, and as PNGs in `output_dir` (if not None). Each
    picture is encoded once (TensorBoard's own `add_image` encodes it again: a stack of 256 trials drew its
    pictures in twice the time)."""
    from PIL import Image
    from tensorboard.compat.proto.summary_pb2 import Summary

    from digitlab.atomic import write_bytes

    for name, picture in pictures.items():
        if np.array_equal(picture[..., 0], picture[..., 1]) and np.array_equal(
            picture[..., 1], picture[..., 2]
        ):
            picture = picture[
                ..., :1
            ]  # grey (the misclassified digits): one channel, half the time to encode
        file = io.BytesIO()
        Image.fromarray(picture[..., 0] if picture.shape[-1] == 1 else picture).save(
            file,
            format="PNG",
            compress_level=1,  # level 6 took 60 % longer
        )
        png = file.getvalue()
        height, width, channels = picture.shape
        image = Summary.Image(height=height, width=width, colorspace=channels, encoded_image_string=png)
        summary = Summary(value=[Summary.Value(tag=f"pictures/{name}", image=image)])
        for logger in loggers:
            if isinstance(logger, TensorBoardLogger):
                add_summary(logger.experiment, summary, step)
        if output_dir is not None:
            write_bytes(output_dir / f"{name}.png", png)
