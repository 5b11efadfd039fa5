"""Compare runs: `digitlab-compare <run, sweep or logs dir> [--metric val/acc_best] [--out DIR]`.

Prints a ranked table of the runs found: the overrides that differ between them, final and best val/acc and
val/loss, epochs and wall time. Runs that differ only in `seed` form one row with mean and standard
deviation. Writes the table as `compare.csv` and `compare.md`, and PNG plots: `val_acc_curves.png` (one
curve per run, from its TensorBoard event files) and `<metric>_vs_<param>.png` for each swept numeric
parameter. Everything lands in `<dir>/compare/` unless `--out` says otherwise.
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from digitlab.config import PLUMBING_KEYS
from digitlab.errors import DigitlabError
from digitlab.exiting import skip_exit_gc
from digitlab.runs import Run, find_runs

# Overrides that are not settings of what was trained; tags and notes get columns of their own.
IGNORED_KEYS = ("hydra.", "tags", "notes", *PLUMBING_KEYS)
SEED = "seed"


def parse_overrides(overrides: list[str]) -> dict[str, str]:
    settings = {}
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        if not key.startswith(IGNORED_KEYS) and not key.startswith("hydra/"):
            settings[key] = value
    return settings


def curve(run: Run, tag: str) -> list[tuple[int, float]]:
    """`(step, value)` points of one scalar from the run's TensorBoard event files (empty if none)."""
    return run.scalars.get(tag, [])


@dataclass
class Group:
    """Runs with the same settings except the seed."""

    settings: dict[str, str]
    runs: list[Run] = field(default_factory=list)
    values: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    @property
    def completed(self) -> list[Run]:
        return [run for run in self.runs if run.completed]

    def mean(self, key: str) -> float | None:
        values = [v for v in self.values[key] if v is not None and math.isfinite(v)]
        return statistics.fmean(values) if values else None

    def std(self, key: str) -> float | None:
        values = [v for v in self.values[key] if v is not None and math.isfinite(v)]
        return statistics.stdev(values) if len(values) > 1 else None


COLUMNS = ("val/acc", "val/acc_best", "val/loss", "val/loss_best", "epochs", "wall_time_s")


@dataclass
class Comparison:
    root: Path
    metric: str
    swept: list[str]  # override keys that differ between runs, seed excluded
    groups: list[Group]
    runs: list[Run]

    @property
    def annotated(self) -> bool:
        """Whether any run carries tags or notes (then the table shows them)."""
        return any(run.setting("tags") or run.setting("notes") for run in self.runs)

    def rows(self) -> list[dict[str, Any]]:
        rows = []
        for rank, group in enumerate(self.groups, start=1):
            seeds = [str(run.setting(SEED)) for run in group.completed]
            row: dict[str, Any] = {"rank": rank, **{k: group.settings.get(k, "-") for k in self.swept}}
            row |= {"runs": f"{len(group.completed)}/{len(group.runs)}", "seeds": ",".join(seeds)}
            if self.annotated:
                row |= {
                    "tags": _joined(r.setting("tags") for r in group.runs),
                    "notes": _joined([r.setting("notes")] for r in group.runs),
                }
            for column in COLUMNS:
                row[column] = group.mean(column)
                if column == "epochs" and row[column] is not None:
                    row[column] = round(row[column])
                if column == "wall_time_s" and row[column] is not None:
                    row[column] = round(row[column], 1)
                if column.startswith("val/"):
                    row[f"{column} std"] = group.std(column)
            rows.append(row)
        return rows


def compare(root: str | Path, metric: str | None = None) -> Comparison:
    root = Path(root)
    if not root.exists():
        raise DigitlabError(
            f"{str(root)!r} does not exist. Pass a run dir, a sweep dir (logs/multiruns/...) or logs/."
        )
    runs = find_runs(root)
    if not runs:
        raise DigitlabError(
            f"no digitlab runs under {str(root)!r}: a run dir holds .hydra/config.yaml (and metrics.json once "
            "complete). Pass a run dir, a sweep dir (logs/multiruns/...) or logs/."
        )
    metric = metric or runs[0].setting("optimized_metric") or "val/acc_best"
    settings = {run.path: parse_overrides(run.overrides) for run in runs}
    keys = sorted({key for s in settings.values() for key in s})
    swept = [k for k in keys if k != SEED and len({settings[r.path].get(k) for r in runs}) > 1]

    groups: dict[tuple, Group] = {}
    for run in runs:
        identity = tuple(settings[run.path].get(k) for k in swept)
        group = groups.setdefault(
            identity, Group({k: v for k, v in zip(swept, identity, strict=True) if v is not None})
        )
        group.runs.append(run)
        if not run.completed:
            continue
        losses = [value for _, value in curve(run, "val/loss")]
        for column in COLUMNS:
            value = min(losses) if column == "val/loss_best" and losses else run.metrics.get(column)
            group.values[column].append(value)
        if metric not in COLUMNS:
            group.values[metric].append(run.metrics.get(metric))

    def rank_key(group: Group) -> tuple:
        value = group.mean(metric)
        better = -value if value is not None and not metric.endswith("loss") else value
        return (value is None, better if better is not None else 0.0)

    return Comparison(root, metric, swept, sorted(groups.values(), key=rank_key), runs)


def _joined(lists) -> str:
    """Distinct non-empty values of several runs' lists, in first-seen order."""
    seen: dict[str, None] = {}
    for values in lists:
        for value in values or []:
            if value:
                seen[str(value)] = None
    return ",".join(seen)


def _fmt(column: str, value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and column.startswith(("val/", "train/")):
        return f"{value:.4f}"
    return str(value)


def markdown(comparison: Comparison) -> str:
    rows = comparison.rows()
    headers = list(rows[0])
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_fmt(h, row[h]) for h in headers) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_csv(comparison: Comparison, path: Path) -> None:
    rows = comparison.rows()
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def plot_curves(comparison: Comparison, path: Path, tag: str = "val/acc") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for index, group in enumerate(comparison.groups):
        label = ", ".join(f"{k}={v}" for k, v in group.settings.items()) or comparison.root.name
        color = f"C{index % 10}"  # one color per group: its seeds read as one setting
        for i, run in enumerate(group.runs):
            points = curve(run, tag)
            if points:
                steps, values = zip(*points, strict=True)
                ax.plot(
                    steps,
                    values,
                    color=color,
                    alpha=0.8,
                    marker="." if len(points) == 1 else None,
                    label=label if i == 0 else None,
                )
    ax.set_xlabel("step")
    ax.set_ylabel(tag)
    ax.set_title(f"{tag} per run ({len(comparison.runs)} runs)")
    ax.grid(alpha=0.3)
    if len(comparison.groups) <= 16:
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def plot_metric_vs_params(comparison: Comparison, out: Path) -> list[Path]:
    """The optimized metric against each swept numeric parameter: one dot per run, a line through the means."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for key in comparison.swept:
        points = [
            (_number(g.settings.get(key)), v)
            for g in comparison.groups
            for v in g.values[comparison.metric]
            if v is not None
        ]
        points = [(x, y) for x, y in points if x is not None]
        if len({x for x, _ in points}) < 2:
            continue
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.scatter([x for x, _ in points], [y for _, y in points], alpha=0.6, label="runs")
        means = defaultdict(list)
        for x, y in points:
            means[x].append(y)
        xs = sorted(means)
        ax.plot(xs, [statistics.fmean(means[x]) for x in xs], "-", color="black", label="mean over seeds")
        if min(xs) > 0 and max(xs) / min(xs) >= 100:
            ax.set_xscale("log")
        ax.set_xlabel(key)
        ax.set_ylabel(comparison.metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out / f"{comparison.metric.replace('/', '_')}_vs_{key.replace('/', '_')}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # run as the command, not called from Python
        skip_exit_gc()
    parser = argparse.ArgumentParser(prog="digitlab-compare", description=__doc__.splitlines()[0])
    parser.add_argument("dir", help="a run dir, a sweep dir (logs/multiruns/...) or logs/")
    parser.add_argument(
        "--metric", default=None, help="rank by this metric (default: the runs' optimized_metric)"
    )
    parser.add_argument(
        "--out", default=None, help="where to write the table and plots (default: <dir>/compare)"
    )
    args = parser.parse_args(argv)
    try:
        comparison = compare(args.dir, args.metric)
    except DigitlabError as err:
        print(f"digitlab-compare: {err}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path(args.dir) / "compare"
    out.mkdir(parents=True, exist_ok=True)
    table = markdown(comparison)
    (out / "compare.md").write_text(table)
    write_csv(comparison, out / "compare.csv")
    plot_curves(comparison, out / "val_acc_curves.png")
    plots = plot_metric_vs_params(comparison, out)
    incomplete = [r for r in comparison.runs if not r.completed]
    print(
        f"{len(comparison.runs)} runs under {args.dir}, ranked by {comparison.metric}"
        + (f" ({len(incomplete)} incomplete or failed)" if incomplete else "")
        + ":\n"
    )
    print(table)
    print(
        f"Written to {out}: compare.md, compare.csv, val_acc_curves.png"
        + "".join(f", {p.name}" for p in plots)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
