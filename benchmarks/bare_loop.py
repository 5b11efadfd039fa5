"""The baseline of the benchmark: each fastbook model trained by a plain PyTorch loop, no framework.

Same data (digitlab's decoded-tensor cache, in memory), same model, batch size, optimizer, schedule and
loss as the experiment; one validation pass per epoch. Prints one JSON line with its timings and accuracy.

    python benchmarks/bare_loop.py linear|mlp|resnet18 <data_dir>
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


def load_split(data_dir: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    (path,) = sorted((data_dir / "cache").glob(f"mnist_sample-{split}-*.pt"))[-1:]
    blob = torch.load(path, weights_only=True)
    return blob["images"].unsqueeze(1).float().div_(255), blob["labels"]


def mnist_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    p = logits.sigmoid()
    return torch.where(targets == 1, 1 - p, p).mean()


def setup(name: str, steps_per_epoch: int):
    """(model, loss, optimizer, scheduler or None, batch size, epochs, binary) as in conf/experiment/."""
    if name == "linear":
        model = nn.Sequential(nn.Flatten(), nn.Linear(784, 1))
        return model, mnist_loss, torch.optim.SGD(model.parameters(), lr=1.0), None, 256, 20, True
    if name == "mlp":
        model = nn.Sequential(nn.Flatten(), nn.Linear(784, 30), nn.ReLU(), nn.Linear(30, 1))
        return model, mnist_loss, torch.optim.SGD(model.parameters(), lr=0.1), None, 256, 40, True
    from torchvision.models import resnet18

    class GrayToRgb(nn.Module):
        def forward(self, x):
            return x.expand(-1, 3, -1, -1)

    model = nn.Sequential(GrayToRgb(), resnet18(num_classes=2))
    opt = torch.optim.AdamW(model.parameters(), lr=0.1, betas=(0.9, 0.99), eps=1e-5, weight_decay=0.01)
    total = steps_per_epoch * 1
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=total, pct_start=0.25)
    return model, F.cross_entropy, opt, sched, 64, 1, False


def main(name: str, data_dir: str) -> None:
    torch.manual_seed(0)
    start = time.perf_counter()
    train_x, train_y = load_split(Path(data_dir), "train")
    valid_x, valid_y = load_split(Path(data_dir), "valid")
    batch = 64 if name == "resnet18" else 256
    steps = (len(train_y) + batch - 1) // batch
    model, loss_fn, opt, sched, batch, epochs, binary = setup(name, steps)
    epoch_times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        model.train()
        for idx in torch.randperm(len(train_y)).split(batch):
            out = model(train_x.index_select(0, idx))  # faster than train_x[idx]
            out = out.squeeze(-1) if binary else out
            loss = loss_fn(out, train_y.index_select(0, idx))
            opt.zero_grad()
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for xb, yb in zip(valid_x.split(batch), valid_y.split(batch), strict=True):
                out = model(xb)
                preds = (out.squeeze(-1) > 0).long() if binary else out.argmax(-1)
                correct += int((preds == yb).sum())
        epoch_times.append(time.perf_counter() - t0)
    print(
        json.dumps(
            {
                "model": name,
                "fit_s": time.perf_counter() - start,
                "epoch_s": sorted(epoch_times)[len(epoch_times) // 2],
                "epochs": epochs,
                "val_acc": correct / len(valid_y),
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
