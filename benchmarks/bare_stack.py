"""The baseline of the wide stacked sweep: K linear trials trained by one hand-written stacked PyTorch loop.

Each trial is the chapter's linear model (784 -> 1, mnist_loss, SGD at its own lr, batch 256) with its own
weights drawn from its seed and its own shuffle order per seed; the trials' weights are one `[seeds, lrs, 784]`
tensor and one `[seeds, lrs]` bias, so each step reads one batch per seed and is one batched matmul, and SGD
is `w -= lr * grad`, each trial at its own lr. One
validation pass per epoch. Prints one JSON line with its wall time and the trials' mean accuracy.

    python benchmarks/bare_stack.py <data_dir> <epochs> <lr,lr,...> <seed,seed,...>
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
from bare_loop import load_split


def main(data_dir: str, epochs: int, lrs: list[float], seeds: list[int]) -> None:
    start = time.perf_counter()
    train_x, train_y = load_split(Path(data_dir), "train")
    valid_x, valid_y = load_split(Path(data_dir), "valid")
    train_x, valid_x = train_x.flatten(1), valid_x.flatten(1)
    # Trial (seed s, lr j) is row [s, j]: trials that share a seed share its batches, read once per step.
    trials = [(lr, seed) for seed in seeds for lr in lrs]
    weights, biases = [], []
    for _, seed in trials:  # nn.Linear's own initialisation, from the trial's seed
        torch.manual_seed(seed)
        layer = torch.nn.Linear(784, 1)
        weights.append(layer.weight.detach()[0])
        biases.append(layer.bias.detach()[0])
    shape = (len(seeds), len(lrs))
    w = torch.stack(weights).view(*shape, 784).requires_grad_()  # [S, L, 784]
    b = torch.stack(biases).view(shape).requires_grad_()  # [S, L]
    lr = torch.tensor(lrs).expand(shape)  # [S, L]
    generators = [torch.Generator().manual_seed(seed) for seed in seeds]
    batch, n = 256, len(train_y)
    for _ in range(epochs):
        orders = torch.stack([torch.randperm(n, generator=g) for g in generators])  # [S, N]
        for start_idx in range(0, n, batch):
            idx = orders[:, start_idx : start_idx + batch]  # [S, B]: each seed's own batch
            xb, yb = train_x[idx], train_y[idx]  # [S, B, 784], [S, B]
            logits = torch.einsum("sbi,sli->slb", xb, w) + b[..., None]  # [S, L, B]
            p = logits.sigmoid()
            loss = torch.where(yb[:, None] == 1, 1 - p, p).mean(dim=2).sum()  # each trial's own mean
            grad_w, grad_b = torch.autograd.grad(loss, (w, b))
            with torch.no_grad():
                w -= lr[..., None] * grad_w
                b -= lr * grad_b
        with torch.no_grad():
            preds = (torch.einsum("ni,sli->sln", valid_x, w) + b[..., None] > 0).long()  # [S, L, N]
            accuracy = (preds == valid_y).float().mean(dim=2)
    print(
        json.dumps(
            {
                "trials": len(trials),
                "fit_s": time.perf_counter() - start,
                "val_acc_mean": float(accuracy.mean()),
            }
        )
    )


if __name__ == "__main__":
    main(
        sys.argv[1],
        int(sys.argv[2]),
        [float(v) for v in sys.argv[3].split(",")],
        [int(v) for v in sys.argv[4].split(",")],
    )
