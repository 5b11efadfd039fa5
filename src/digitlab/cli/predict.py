"""usage: digitlab-predict ckpt_path=<checkpoint> [invert=auto|true|false] <images, folders, globs>

Digits from image files, with a model trained by digitlab-train.

  ckpt_path=<file>         a checkpoint of a digitlab run (logs/runs/<run>/checkpoints/last.ckpt, or the best
                           epoch's); read as data only
  invert=auto|true|false   auto (default): flip images whose border is light (a dark digit on paper) to
                           MNIST's white on black; true or false forces it
  <images>                 files (png, jpg, bmp, gif, tif, webp), folders (their images, recursively) and
                           quoted globs ("scans/*.png"); a glob that matches nothing or a folder without
                           images is an error. A path that exists is read as a path, even if its name
                           holds '=' (scans/digit=3.png); any other key=value that is not an option above
                           is refused

Any size and mode (RGB, RGBA, grayscale, 16-bit, palette, CMYK) is decoded as training decodes its PNGs
(16-bit gray scaled, not clipped; transparency as paper) and framed as MNIST framed its digits: a light
background inverted, and an image that is not 28x28 has its ink's bounding box fitted into 20x20 (aspect
ratio kept) and centred by mass in 28x28; stderr says so for each image it changed.

Output (stdout): one line per image, tab-separated: its path, the predicted digit (a class of the model:
3 or 7 for MNIST_SAMPLE, 0-9 for MNIST) and that digit's probability, e.g.
  scans/a.png	7	0.9981
Unreadable images are named on stderr and skipped. Exit code: 0 when every image was predicted, 1 if any
could not be read or the checkpoint is refused, 2 for a command line it cannot read.
"""

from __future__ import annotations

import glob
import sys
from pathlib import Path

import numpy as np

from digitlab.cli.arguments import parse_args, wants_help
from digitlab.errors import DigitlabError
from digitlab.process import apply_process_policy

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
INVERT_CHOICES = ("auto", "true", "false")
OPTIONS = ("ckpt_path", "invert")


def expand(patterns: list[str]) -> list[Path]:
    """Files, folders (their images, recursively) and globs, in a stable order; missing paths are kept so that
    they are reported as unreadable. A glob that matches nothing, or a folder without images, is an error:
    nothing to do is never a silent success."""
    paths: list[Path] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern, recursive=True)) if glob.has_magic(pattern) else [pattern]
        found: list[Path] = []
        for match in map(Path, matches):
            if match.is_dir():
                found += sorted(p for p in match.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            else:
                found.append(match)
        if not found:
            what = "the folder" if Path(pattern).is_dir() else "the pattern"
            raise DigitlabError(
                f"{what} {pattern!r} holds no image to predict ({'matches nothing' if not matches else 'no file'}"
                f" ending in {', '.join(sorted(IMAGE_SUFFIXES))}). Pass image files, folders of them, or a glob "
                "such as 'digits/*.png' (quoted, so that the shell leaves it to digitlab)."
            )
        paths += found
    return paths


def to_mnist_format(path: Path, invert: str = "auto", notes: list[str] | None = None) -> np.ndarray:
    """float32 `[28, 28]` in [0, 1], a white digit on black, made as MNIST's digits were: decoded as training
    decodes (`data.images.gray8`), a light background inverted, and, for an image that is not 28x28, the
    ink's bounding box fitted into 20x20 keeping its aspect ratio and centred by mass in 28x28 (squeezing a
    120x90 drawing to 28x28 distorts it into another digit). What it had to do is appended to `notes`."""
    from PIL import Image

    from digitlab.data.images import IMAGE_SIZE, gray8

    with Image.open(path) as img:
        img.load()
        gray = gray8(img, transparent=255).astype(np.float32) / 255  # transparent = paper
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if invert == "true" or (invert == "auto" and border.mean() > 0.5):
        gray = 1.0 - gray
        if notes is not None and invert == "auto":
            notes.append("dark on light: inverted")
    if gray.shape == IMAGE_SIZE[::-1]:
        return gray
    if notes is not None:
        notes.append(
            f"{gray.shape[1]}x{gray.shape[0]}: its ink fitted into 20x20 and centred by mass in 28x28"
        )
    return mnist_framed(gray)


def mnist_framed(ink: np.ndarray, box: int = 20, size: int = 28) -> np.ndarray:
    """`ink` (float, white on black, any size) as MNIST framed its digits: the bounding box of the ink (pixels
    above a tenth of the brightest) scaled to fit `box` x `box`, aspect kept, then placed in `size` x `size`
    so that its centre of mass is the centre."""
    from PIL import Image

    rows, cols = np.nonzero(ink > 0.1 * ink.max()) if ink.max() > 0 else ((), ())
    if len(rows) == 0:  # no ink at all: nothing to frame
        return np.zeros((size, size), np.float32)
    crop = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    scale = box / max(crop.shape)
    height, width = (max(1, round(n * scale)) for n in crop.shape)
    fitted = np.asarray(
        Image.fromarray(crop.astype(np.float32), mode="F").resize((width, height), Image.Resampling.LANCZOS)
    ).clip(0, 1)
    ys, xs = np.indices(fitted.shape)
    mass = fitted.sum()
    centre_y, centre_x = (ys * fitted).sum() / mass, (xs * fitted).sum() / mass
    top = round(size / 2 - centre_y)
    left = round(size / 2 - centre_x)
    top, left = min(max(top, 0), size - height), min(max(left, 0), size - width)
    framed = np.zeros((size, size), np.float32)
    framed[top : top + height, left : left + width] = fitted
    return framed


def predict(
    ckpt_path: str, patterns: list[str], invert: str = "auto"
) -> tuple[list[tuple[Path, str, float]], list[tuple[Path, str]]]:
    """`(predictions as (path, digit, probability), failures as (path, reason))`."""
    import torch

    from digitlab.build import build_from_checkpoint

    if invert not in INVERT_CHOICES:
        raise DigitlabError(f"invert={invert!r} is invalid: it must be one of {', '.join(INVERT_CHOICES)}.")
    paths = expand(patterns)  # before the model is built: nothing to do is said at once
    _, _, model = build_from_checkpoint(ckpt_path)
    predictions, failures = [], []
    for path in paths:
        notes: list[str] = []
        try:
            image = to_mnist_format(path, invert, notes)
        except (OSError, ValueError) as err:
            failures.append((path, f"{type(err).__name__}: {err}"))
            continue
        if notes:
            print(f"digitlab-predict: {path}: {'; '.join(notes)}", file=sys.stderr)
        with torch.no_grad():
            probabilities = model.probabilities(model(torch.from_numpy(image)[None, None]))[0]
        label = int(probabilities.argmax())
        predictions.append((path, model.class_names[label], float(probabilities[label])))
    return predictions, failures


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # run as the command, not called from Python
        apply_process_policy()
    argv = sys.argv[1:] if argv is None else argv
    if wants_help(argv):
        print(__doc__)
        return 0
    settings, positional = parse_args(argv)
    unknown = [f"{key}={value}" for key, value in settings.items() if key not in OPTIONS]
    unknown += [arg for arg in positional if arg.startswith("-") and not Path(arg).exists()]  # --device
    if unknown:
        print(
            f"digitlab-predict: {unknown[0]!r} is neither an option of digitlab-predict (it takes "
            f"{', '.join(f'{o}=' for o in OPTIONS)}) nor an existing file. An image whose name holds '=' is read "
            f"as an image when its path exists: check the path.\n{__doc__.splitlines()[0]}",
            file=sys.stderr,
        )
        return 2
    if "ckpt_path" not in settings or not positional:
        print(f"{__doc__.splitlines()[0]}\n(digitlab-predict --help says more)", file=sys.stderr)
        return 2
    try:
        predictions, failures = predict(settings["ckpt_path"], positional, settings.get("invert", "auto"))
    except DigitlabError as err:
        print(f"digitlab-predict: {err}", file=sys.stderr)
        return 1
    for path, digit, probability in predictions:
        print(f"{path}\t{digit}\t{probability:.4f}")
    for path, reason in failures:
        print(f"digitlab-predict: cannot read {path}: {reason}; skipped", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
