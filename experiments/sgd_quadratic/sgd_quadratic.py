"""The chapter's roller-coaster example: fit speed = a*t^2 + b*t + c to 20 noisy measurements by plain SGD.

Writes the chapter's before/after plot (measurements in blue, the quadratic's predictions in red) as a PNG,
and logs the loss of every step to TensorBoard.

    python experiments/sgd_quadratic/sgd_quadratic.py [--steps 10] [--lr 1e-5] [--seed 42] [--out DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter

HERE = Path(__file__).resolve().parent


def f(t: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    a, b, c = params
    return a * (t**2) + (b * t) + c


def mse(preds: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return ((preds - targets) ** 2).mean()


def fit(steps: int, lr: float, seed: int) -> dict:
    """The chapter's apply_step loop; returns the data, predictions before and after, and each step's loss."""
    torch.manual_seed(seed)
    time = torch.arange(0, 20).float()
    speed = torch.randn(20) * 3 + 0.75 * (time - 9.5) ** 2 + 1
    params = torch.randn(3).requires_grad_()
    before = f(time, params).detach()
    losses = []
    for _ in range(steps):
        loss = mse(f(time, params), speed)
        loss.backward()
        with torch.no_grad():
            params -= lr * params.grad
        params.grad = None
        losses.append(loss.item())
    return {
        "time": time,
        "speed": speed,
        "before": before,
        "after": f(time, params).detach(),
        "losses": losses,
        "params": params.detach(),
    }


def plot(result: dict, path: Path, steps: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), sharey=True)
    for ax, key, title in ((axes[0], "before", "before SGD"), (axes[1], "after", f"after {steps} steps")):
        ax.scatter(result["time"], result["speed"], label="measured speed")
        ax.scatter(result["time"], result[key], color="red", label="a*t^2 + b*t + c")
        ax.set_title(title)
        ax.set_xlabel("time")
    axes[0].set_ylabel("speed")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=HERE, help="where the PNG goes")
    parser.add_argument("--logdir", type=Path, default=HERE.parents[1] / "logs" / "sgd_quadratic")
    args = parser.parse_args(argv)

    result = fit(args.steps, args.lr, args.seed)
    with SummaryWriter(str(args.logdir)) as writer:
        for step, loss in enumerate(result["losses"]):
            writer.add_scalar("loss", loss, step)
    args.out.mkdir(parents=True, exist_ok=True)
    plot(result, args.out / "before_after.png", args.steps)
    print(
        f"loss {result['losses'][0]:.1f} -> {result['losses'][-1]:.1f} in {args.steps} steps (lr {args.lr})"
    )
    print(f"plot: {args.out / 'before_after.png'}   tensorboard --logdir {args.logdir}")
    return result


if __name__ == "__main__":
    main()
