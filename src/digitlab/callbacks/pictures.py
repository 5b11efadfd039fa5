"""Pictures in TensorBoard, what the chapter shows with show_image: the model's own pictures (the ideal
digits of the baseline, the first layer's weights of linear and MLP), a grid of misclassified validation
images titled with their true and predicted digits, and the confusion matrix.

Validation batches are kept as tensors (no host sync per step); figures are drawn when fit ends, from the
last validation, and every `every_n_epochs` if set. Each figure also lands as a PNG in `<run>/pictures/`.
"""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger


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
        self.output_dir = Path(output_dir) / "pictures" if output_dir is not None else None
        self.max_misclassified = max_misclassified
        self.every_n_epochs = every_n_epochs
        self._batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self._drawn_step: int | None = None

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._batches = []

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        if trainer.sanity_checking or not isinstance(outputs, dict) or "preds" not in outputs:
            return
        images, labels = batch
        self._batches.append((images, labels, outputs["preds"]))

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
        import matplotlib

        matplotlib.use("Agg")  # files only: no display needed, none is opened
        import matplotlib.pyplot as plt

        names = list(pl_module.class_names)
        figures = {}
        for name, (images, captions) in pl_module.pictures().items():
            cmap = "gray" if name == "ideal_digits" else "bwr"
            figures[name] = image_grid(images.detach().float().cpu(), captions, cmap=cmap)
        if self._batches:
            images = torch.cat([b[0] for b in self._batches]).cpu()
            labels = torch.cat([b[1] for b in self._batches]).cpu()
            preds = torch.cat([b[2] for b in self._batches]).cpu()
            wrong = (preds != labels).nonzero().flatten()[: self.max_misclassified]
            if len(wrong):
                captions = [f"true {names[labels[i]]} / pred {names[preds[i]]}" for i in wrong.tolist()]
                figures["misclassified"] = image_grid(images[wrong], captions, cmap="gray")
            figures["confusion_matrix"] = confusion_figure(preds, labels, names)
        for name, figure in figures.items():
            for logger in trainer.loggers:
                if isinstance(logger, TensorBoardLogger):
                    logger.experiment.add_figure(
                        f"pictures/{name}", figure, global_step=trainer.global_step, close=False
                    )
            if self.output_dir is not None:
                self.output_dir.mkdir(parents=True, exist_ok=True)
                figure.savefig(self.output_dir / f"{name}.png", dpi=100)
            plt.close(figure)
        self._drawn_step = trainer.global_step


def image_grid(images: torch.Tensor, captions: list[str], cmap: str = "gray"):
    """A matplotlib figure of `[N, 1, 28, 28]` images, one caption each. Weights (`bwr`) are centred on 0.

    The tiles form one mosaic image in a single axes: one axes per image costs matplotlib far more.
    """
    import matplotlib.pyplot as plt

    n = len(images)
    cols = min(n, 10 if n > 12 else 6)
    rows = math.ceil(n / cols)
    pad, cell, caption = 4, 28, 9  # pixels around, of, and above each tile
    limit = float(images.abs().max()) or 1.0
    background = 0.0 if cmap == "bwr" else float(images.min())
    mosaic = np.full((rows * (cell + pad + caption), cols * (cell + pad)), background, dtype=np.float32)
    fig, ax = plt.subplots(figsize=(1.3 * cols, 1.45 * rows))
    for i, (image, text) in enumerate(zip(images.numpy(), captions, strict=False)):
        top = (i // cols) * (cell + pad + caption) + caption
        left = (i % cols) * (cell + pad) + pad // 2
        mosaic[top : top + cell, left : left + cell] = image[0]
        ax.text(
            left + cell / 2,
            top - 1.5,
            text,
            ha="center",
            va="bottom",
            fontsize=7,
            color="black",
            backgroundcolor="white",
        )
    if cmap == "bwr":
        ax.imshow(mosaic, cmap=cmap, vmin=-limit, vmax=limit, interpolation="nearest")
    else:
        ax.imshow(mosaic, cmap=cmap, interpolation="nearest")
    ax.axis("off")
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.99)
    return fig


def confusion_figure(preds: torch.Tensor, labels: torch.Tensor, names: list[str]):
    """Counts of (true, predicted) pairs, computed by torchmetrics, drawn with the counts written in."""
    import matplotlib.pyplot as plt
    from torchmetrics.functional.classification import multiclass_confusion_matrix

    matrix = multiclass_confusion_matrix(preds, labels, num_classes=len(names)).numpy()
    side = max(3.5, 0.55 * len(names))
    fig, ax = plt.subplots(figsize=(side + 0.8, side))
    ax.imshow(matrix, cmap="Blues")
    ticks = range(len(names))
    ax.set_xticks(ticks, names)
    ax.set_yticks(ticks, names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (row, col), count in np.ndenumerate(matrix):
        ax.text(
            col,
            row,
            str(count),
            ha="center",
            va="center",
            color="white" if count > matrix.max() / 2 else "black",
            fontsize=8,
        )
    fig.tight_layout()
    return fig
