"""The two on-disk layouts fastai users have, described once so every source and check agrees on them.

`untar_data(URLs.MNIST_SAMPLE)` gives `mnist_sample/{train,valid}/{3,7}/<n>.png` plus `labels.csv`;
`untar_data(URLs.MNIST)` gives `mnist_png/{training,testing}/{0..9}/<n>.png`. `<n>` is the image's index in
MNIST's training set (60000) or test set (10000).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Layout:
    name: str  # the folder the archive extracts to
    url: str  # fastai's URL
    size: int  # archive size in bytes and md5, from fastai's own checks.txt
    md5: str
    train_dir: str
    valid_dir: str
    # Folder names ordered by label: class_names[i] is the folder holding label i.
    class_names: tuple[str, ...]
    train_counts: tuple[int, ...]  # PNGs per class, in class_names order
    valid_counts: tuple[int, ...]
    has_labels_csv: bool

    def split_dir(self, split: str) -> str:
        return {"train": self.train_dir, "valid": self.valid_dir}[split]

    def counts(self, split: str) -> tuple[int, ...]:
        return {"train": self.train_counts, "valid": self.valid_counts}[split]


# The chapter labels a 3 as 1 and a 7 as 0 (`train_y = [1]*len(threes) + [0]*len(sevens)`), and mnist_loss
# reads its single output as "probability of a 3". So label 0 is "7" and label 1 is "3".
MNIST_SAMPLE = Layout(
    name="mnist_sample",
    url="https://s3.amazonaws.com/fast-ai-sample/mnist_sample.tgz",
    size=3214948,
    md5="2dbc7ec6f9259b583af0072c55816a88",
    train_dir="train",
    valid_dir="valid",
    class_names=("7", "3"),
    train_counts=(6265, 6131),
    valid_counts=(1028, 1010),
    has_labels_csv=True,
)

MNIST = Layout(
    name="mnist_png",
    url="https://s3.amazonaws.com/fast-ai-imageclas/mnist_png.tgz",
    size=15683414,
    md5="03639f83c4e3d19e0a3a53a8a997c487",
    train_dir="training",
    valid_dir="testing",
    class_names=tuple(str(d) for d in range(10)),
    train_counts=(5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949),
    valid_counts=(980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009),
    has_labels_csv=False,
)
