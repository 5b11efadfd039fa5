"""The reproduction table of a fastbook_ch4 sweep: the chapter's accuracy next to ours (mean and spread over
seeds), epochs and wall time per run. Usage: python make_table.py <sweep dir> > results.md
"""

from __future__ import annotations

import platform
import statistics
import sys
from collections import defaultdict

import torch

from digitlab.rundir import find_runs

# What the chapter reports on MNIST_SAMPLE (../shared/reference/README.md); the 10-digit runs have no chapter figure.
CHAPTER = {
    "fastbook_baseline": ("pixel similarity, L1 to the mean 3 / mean 7", "0.9511 (3s 0.9168, 7s 0.9854)"),
    "fastbook_linear": ("linear 784->1, mnist_loss, SGD lr 1.0, batch 256", "about 0.974"),
    "fastbook_mlp": ("simple_net 784->30->ReLU->1, mnist_loss, SGD lr 0.1", "0.9828"),
    "fastbook_resnet18": ("resnet18 from scratch, cross entropy, one cycle to lr 0.1", "0.996"),
    "mnist_baseline": ("pixel similarity, L1 to the 10 mean digits", "-"),
    "mnist_linear": ("linear 784->10, cross entropy, SGD lr 1.0, batch 256", "-"),
    "mnist_mlp": ("784->30->ReLU->10, cross entropy, SGD lr 0.1", "-"),
    "mnist_resnet18": ("resnet18 from scratch, cross entropy, one cycle to lr 0.1", "-"),
}


def spread(values: list[float]) -> str:
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:.4f}"
    return f"{mean:.4f} ± {statistics.stdev(values):.4f}"


def main(sweep: str) -> None:
    groups: dict[str, list] = defaultdict(list)
    for run in find_runs(sweep):
        if run.completed:
            groups[run.setting("experiment_name")].append(run)
    print(f"Sweep `{sweep}`: {sum(map(len, groups.values()))} completed runs.\n")
    print(
        "| experiment | pipeline | chapter | ours: val/acc (mean ± std) | ours: mean of per-class acc | seeds "
        "| epochs | wall time per run (s) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in sorted(groups, key=lambda n: list(CHAPTER).index(n) if n in CHAPTER else 99):
        runs = groups[name]
        pipeline, chapter = CHAPTER.get(name, (name, "-"))
        accs = [r.metrics["val/acc"] for r in runs]
        macro = [r.metrics["val/acc_macro"] for r in runs]
        seeds = ",".join(str(r.setting("seed")) for r in runs)
        wall = statistics.fmean(r.metrics["wall_time_s"] for r in runs)
        print(
            f"| {name} | {pipeline} | {chapter} | {spread(accs)} | {spread(macro)} | {seeds} "
            f"| {runs[0].metrics['epochs']} | {wall:.1f} |"
        )
    print(
        f"\nMachine: {platform.machine()}, {torch.get_num_threads()} torch threads, Python "
        f"{platform.python_version()}, torch {torch.__version__}. Wall time is `Trainer.fit` alone "
        "(data already cached), from each run's metrics.json."
    )


if __name__ == "__main__":
    main(sys.argv[1])
