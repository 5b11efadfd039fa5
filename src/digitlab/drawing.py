"""Pictures as RGB arrays, drawn with Pillow: a captioned grid of digits (with a title and, for weights, a
colour bar saying what each colour means) and a confusion matrix.

Pillow is already loaded with torchvision, so drawing costs milliseconds; matplotlib would add about half a
second of import to every run for the same pictures. The colours follow matplotlib's: `gray` scaled to the
images' range, `bwr` (blue - white - red, centred on 0) for weights, `Blues` for counts.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

SCALE = 3  # screen pixels per MNIST pixel
PAD = 8  # pixels between tiles
CAPTION = 16  # pixels of caption above each tile
BLUES = (np.array([247, 251, 255]), np.array([8, 48, 107]))  # matplotlib's Blues, lightest and darkest


TITLE = 22  # pixels of title above the grid
LEGEND = 44  # pixels of colour bar and its words below a `bwr` grid


@dataclass(frozen=True)
class Grid:
    """What a model shows of itself: images `[N, 1, 28, 28]` with one caption each; `title` says what they are;
    for signed images (`cmap="bwr"`), `legend` says what blue and red mean."""

    images: torch.Tensor
    captions: list[str]
    cmap: str = "gray"
    title: str = ""
    legend: tuple[str, str] | None = None

    def draw(self) -> np.ndarray:
        return image_grid(self.images, self.captions, self.cmap, self.title, self.legend)


@functools.cache
def font(size: int = 11) -> ImageFont.FreeTypeFont:
    """Pillow's built-in scalable font (Pillow >= 10.1 with FreeType, as in Pillow's wheels), loaded once per
    size (Pillow decodes it from base64 each time; a stack of 256 trials draws ~2000 captions)."""
    return ImageFont.load_default(size=size)


def colorize(images: np.ndarray, cmap: str) -> np.ndarray:
    """`[..., H, W]` floats -> `[..., H, W, 3]` uint8 in colormap `gray` or `bwr`."""
    if cmap == "bwr":
        limit = float(np.abs(images).max()) or 1.0
        t = np.clip(images / limit, -1.0, 1.0)[..., None]
        white, blue, red = np.array([1.0, 1.0, 1.0]), np.array([0.0, 0.0, 1.0]), np.array([1.0, 0.0, 0.0])
        rgb = np.where(t < 0, white + (blue - white) * -t, white + (red - white) * t)
    elif cmap == "gray":
        low, high = float(images.min()), float(images.max())
        rgb = np.repeat(((images - low) / ((high - low) or 1.0))[..., None], 3, axis=-1)
    else:
        raise ValueError(f"cmap={cmap!r} is not one of: gray, bwr")
    return (rgb * 255).round().astype(np.uint8)


def image_grid(
    images: torch.Tensor,
    captions: list[str],
    cmap: str = "gray",
    title: str = "",
    legend: tuple[str, str] | None = None,
) -> np.ndarray:
    """`[N, 1, 28, 28]` images, each under its caption, in rows of up to 10, under `title`; for `bwr`, a
    colour bar from -max|w| to +max|w| with `legend`'s words for blue and red -> an RGB array `[H, W, 3]`."""
    values = images.detach().float().cpu()[:, 0].numpy()
    tiles = colorize(values, cmap)
    tiles = tiles.repeat(SCALE, axis=1).repeat(SCALE, axis=2)  # nearest-neighbour upscaling
    n, cell = len(tiles), tiles.shape[1]
    cols = min(n, 10 if n > 12 else 6) or 1
    rows = math.ceil(n / cols)
    head = TITLE if title else 0
    foot = LEGEND if cmap == "bwr" else 0
    width = max(cols * (cell + PAD) + PAD, 330 if (title or foot) else 0)
    height = head + rows * (cell + CAPTION + PAD) + PAD + foot
    background = 0 if cmap == "gray" else 255
    canvas = Image.new("RGB", (width, height), (background,) * 3)
    if title:
        put_text(canvas, (PAD, head // 2 + 2), title, "white" if background == 0 else "black", 13, "lm")
    if foot:
        _colour_bar(canvas, width, height - foot, float(np.abs(values).max()) or 1.0, legend)
    for i, (tile, caption) in enumerate(zip(tiles, captions, strict=False)):
        left = PAD + (i % cols) * (cell + PAD)
        top = head + PAD + (i // cols) * (cell + CAPTION + PAD)
        canvas.paste(Image.fromarray(tile), (left, top + CAPTION))
        label = _caption(caption)
        canvas.paste(label, (round(left + (cell - label.width) / 2), top))
    return np.asarray(canvas)


@functools.lru_cache(maxsize=4096)
def _caption(words: str) -> Image.Image:
    """A tile's caption, black on a white label, rendered once per text: a stack of 256 trials draws ~9000
    captions, most of them alike ("3 / 7  97%")."""
    left, _, right, _ = font().getbbox(words)
    label = Image.new("RGB", (right - left + 6, CAPTION - 1), "white")
    put_text(label, (label.width // 2, (CAPTION - 2) // 2), words, "black", 11, "mm")
    return label


def put_text(canvas: Image.Image, xy: tuple[int, int], words: str, fill: str, size: int, anchor: str) -> None:
    """`words` in Pillow's built-in font at `size`, placed at the whole pixel `xy` by `anchor` (as
    `ImageDraw.text` places them), in `fill`: pasted through its mask (`_text_mask`)."""
    mask, (left, top) = _text_mask(words, size, anchor)
    x, y = xy[0] + left, xy[1] + top
    canvas.paste(fill, (x, y, x + mask.width, y + mask.height), mask)


@functools.lru_cache(maxsize=8192)
def _text_mask(words: str, size: int, anchor: str) -> tuple[Image.Image, tuple[int, int]]:
    """`words` rendered once as a mask, with its top-left corner's offset from the anchor point: a stack of
    256 trials writes ~4000 titles, counts and scale labels, most of them alike, and FreeType's rendering
    of each took a quarter of the pictures' time."""
    text_font = font(size)
    left, top, right, bottom = text_font.getbbox(words, anchor=anchor)
    mask = Image.new("L", (max(right - left, 1), max(bottom - top, 1)), 0)
    ImageDraw.Draw(mask).text((-left, -top), words, 255, text_font, anchor=anchor)
    return mask, (left, top)


def _colour_bar(
    canvas: Image.Image, width: int, top: int, limit: float, legend: tuple[str, str] | None
) -> None:
    """`bwr`'s scale under the grid: blue at -limit, white at 0, red at +limit, and what each colour means."""
    left, right = PAD, min(width - PAD, PAD + 300)
    canvas.paste(_colour_strip(right - left), (left, top + 4))
    ImageDraw.Draw(canvas).rectangle((left, top + 4, right - 1, top + 14), outline="gray")
    for x, words, anchor in (
        (left, f"{-limit:.2g}", "lt"),
        ((left + right) // 2, "0", "mt"),
        (right, f"+{limit:.2g}", "rt"),
    ):
        put_text(canvas, (x, top + 16), words, "black", 10, anchor)
    if legend:
        put_text(canvas, (left, top + 30), f"blue: {legend[0]}   red: {legend[1]}", "black", 11, "lt")


@functools.cache
def _colour_strip(width: int) -> Image.Image:
    """The bar's colours, blue to white to red over `width` pixels, 11 high: the same whatever the limit
    (the values are scaled by it), so drawn once (a line per pixel took 2 of a weights grid's 2.6 ms)."""
    strip = colorize(np.linspace(-1.0, 1.0, width)[None, :], "bwr")
    return Image.fromarray(np.repeat(strip, 11, axis=0))


def confusion_image(matrix: np.ndarray, names: list[str]) -> np.ndarray:
    """Counts of (true row, predicted column), shaded by count with the count written in -> RGB array."""
    k = len(names)
    cell = 96 if k <= 3 else 44
    margin_left, margin_top, margin_bottom = 56, 16, 48
    width, height = margin_left + k * cell + 16, margin_top + k * cell + margin_bottom
    canvas = Image.new("RGB", (width, height), "white")
    draw, count_size = ImageDraw.Draw(canvas), 12 if k <= 3 else 10
    peak = max(int(matrix.max()), 1)

    def centred(x: float, y: float, words: str, fill: str, size: int = 13) -> None:
        put_text(canvas, (round(x), round(y)), words, fill, size, "mm")

    for (row, col), count in np.ndenumerate(matrix):
        share = count / peak
        colour = tuple(int(c) for c in (BLUES[0] + (BLUES[1] - BLUES[0]) * share).round())
        left, top = margin_left + col * cell, margin_top + row * cell
        draw.rectangle((left, top, left + cell, top + cell), fill=colour)
        centred(left + cell / 2, top + cell / 2, str(count), "white" if share > 0.5 else "black", count_size)
    draw.rectangle((margin_left, margin_top, margin_left + k * cell, margin_top + k * cell), outline="black")
    for i, name in enumerate(names):
        centred(margin_left + (i + 0.5) * cell, margin_top + k * cell + 12, name, "black")
        centred(margin_left - 14, margin_top + (i + 0.5) * cell, name, "black")
    centred(margin_left + k * cell / 2, height - 14, "predicted", "black")
    canvas.paste(_true_label(), (6, margin_top + k * cell // 2 - 30))
    return np.asarray(canvas)


@functools.cache
def _true_label() -> Image.Image:
    """The confusion matrix's row axis label, "true", turned upright."""
    label = Image.new("RGB", (60, 18), "white")
    put_text(label, (30, 9), "true", "black", 13, "mm")
    return label.rotate(90, expand=True)
