"""The pictures' pixels: colormaps as matplotlib defines them, grid and confusion-matrix layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from digitlab.drawing import CAPTION, PAD, SCALE, colorize, confusion_image, image_grid


def test_bwr_is_centred_on_zero():
    rgb = colorize(np.array([[-2.0, -1.0, 0.0, 1.0, 2.0]]), "bwr")[0]
    assert rgb.tolist() == [[0, 0, 255], [128, 128, 255], [255, 255, 255], [255, 128, 128], [255, 0, 0]]


def test_gray_spans_the_images_range():
    rgb = colorize(np.array([[0.2, 0.4, 1.0]]), "gray")[0]
    assert rgb[:, 0].tolist() == [0, 64, 255] and (rgb == rgb[:, :1]).all()
    assert colorize(np.zeros((2, 2)), "gray").max() == 0  # a blank image stays blank, no division by zero


def test_unknown_colormap_is_named():
    with pytest.raises(ValueError, match="cmap='viridis' is not one of: gray, bwr"):
        colorize(np.zeros((2, 2)), "viridis")


def test_grid_places_every_tile_under_its_caption():
    images = torch.zeros(13, 1, 28, 28)
    images[12, 0, 0, 0] = 1.0  # the last tile's top-left pixel is white
    grid = image_grid(images, [f"#{i}" for i in range(13)])
    cell = 28 * SCALE
    assert grid.shape == (2 * (cell + CAPTION + PAD) + PAD, 10 * (cell + PAD) + PAD, 3)
    top, left = PAD + (cell + CAPTION + PAD) + CAPTION, PAD + 2 * (cell + PAD)  # tile 12: row 1, column 2
    assert (grid[top : top + SCALE, left : left + SCALE] == 255).all()
    assert (grid[top + SCALE : top + cell, left + SCALE : left + cell] == 0).all()
    assert (grid[PAD + 2, PAD + cell // 2 - 20 : PAD + cell // 2 + 20] == 255).any()  # a white caption box


def test_confusion_matrix_shades_by_count():
    picture = confusion_image(np.array([[90, 10], [0, 100]]), ["7", "3"])
    assert picture.ndim == 3 and picture.shape[2] == 3
    left, top, cell = 56, 16, 96
    few = picture[top + 5, left + cell + 5]  # row 0 (true 7), column 1 (predicted 3): 10
    most = picture[top + cell + 5, left + cell + 5]  # row 1, column 1: 100, the largest count
    assert most.tolist() == [8, 48, 107] and few.sum() > 600
