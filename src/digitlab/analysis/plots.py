"""The comparison's plots, drawn on a `matplotlib.figure.Figure` (no pyplot, no global backend: a notebook
that calls these keeps its own). Every line is one group of runs (the same settings but the seed): its mean
over seeds, with a band of one standard deviation; a line never averages runs of different settings.

- `curves_figure`: a metric per epoch, one line per group; past `TOP` groups the best `TOP` are drawn in
  colour and the rest in grey under one legend entry.
- `metric_vs_param_figures`: the ranked metric against each swept number, one line per combination of the
  other settings (`model=linear`, `model=mlp`), each run a dot; a log axis where the values span decades.
"""

from __future__ import annotations

import statistics
from collections import defaultdict

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from digitlab.analysis.table import Comparison, Group
from digitlab.console import shown_value as display
from digitlab.rundir import COMPLETED, Run

LOG_SPAN = 10  # a swept number whose values span more than this factor is drawn on a log axis
LEGEND_INSIDE = 6  # up to this many legend entries fit inside the axes; more go in a column beside it
TOP = 10  # curves drawn in colour; the other groups are grey


def epoch_series(run: Run, tag: str) -> dict[int, float]:
    """`epoch (1-based) -> value` of a scalar logged once per epoch, read from the run's event files
    (Lightning logs the 0-based `epoch` at the same steps; without it, the n-th value is epoch n's)."""
    points = run.scalars.get(tag, [])
    epochs = dict(run.scalars.get("epoch", []))
    if not epochs:
        return {n: value for n, (_, value) in enumerate(points, start=1)}
    return {int(epochs[step]) + 1: value for step, value in points if step in epochs}


def _band(ax, points: dict[float, list[float]], color: str, label: str | None) -> None:
    """A line through the mean of the values at each x, in a ±1 std band where there are two or more."""
    xs = sorted(x for x, values in points.items() if values)
    means = np.array([statistics.fmean(points[x]) for x in xs])
    spreads = np.array([statistics.stdev(points[x]) if len(points[x]) > 1 else 0.0 for x in xs])
    ax.plot(xs, means, "-", color=color, label=label, marker="." if len(xs) == 1 else None)
    if spreads.any():
        ax.fill_between(xs, means - spreads, means + spreads, color=color, alpha=0.2, linewidth=0)


def _legend(fig: Figure, ax, entries: int) -> None:
    if entries > LEGEND_INSIDE:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    elif entries and ax.get_legend_handles_labels()[1]:
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()


def _group_label(comparison: Comparison, group: Group) -> str:
    label = group.label or comparison.root.name
    if len(group.runs) > 1:
        label += f" (n={len(group.runs)})"
    if comparison.shows_status and group.status != COMPLETED:
        label += f" [{group.status}]"  # pruned curves end early on purpose
    return label


def curves_figure(comparison: Comparison, tag: str = "val/acc") -> Figure:
    """`tag` per epoch, one line (mean over seeds, ±1 std band) per group, in ranked order."""
    groups = comparison.groups
    shown = min(len(groups), TOP)
    beside = shown > LEGEND_INSIDE
    fig = Figure(figsize=(11 if beside else 8, 4.5))
    ax = fig.subplots()
    others = 0
    for index, group in enumerate(groups):
        series = [s for s in (epoch_series(run, tag) for run in group.runs) if s]
        if not series:
            continue
        if index < TOP:
            points = {x: [s[x] for s in series if x in s] for x in {x for s in series for x in s}}
            _band(ax, points, f"C{index % 10}", _group_label(comparison, group))
        else:
            for s in series:
                ax.plot(
                    sorted(s),
                    [s[x] for x in sorted(s)],
                    color="0.7",
                    linewidth=0.8,
                    zorder=0,
                    label=None if others else f"{len(groups) - TOP} more settings",
                )
                others += 1
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(tag)
    title = f"{tag} per epoch: {len(comparison.runs)} runs, {len(groups)} settings"
    ax.set_title(title + (", mean ± std over seeds" if any(len(g.runs) > 1 for g in groups) else ""))
    ax.grid(alpha=0.3)
    _legend(fig, ax, shown + (1 if others else 0))
    return fig


def _number(value) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def metric_vs_param_figures(comparison: Comparison) -> dict[str, Figure]:
    """The ranked metric against each swept numeric setting (`key -> Figure`): one line per combination of
    the other swept settings (mean over seeds, ±1 std band), each run a dot."""
    figures = {}
    metric = comparison.metric
    for key in comparison.swept:
        lines: dict[tuple, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
        names: dict[tuple, str] = {}
        for group in comparison.groups:
            x = _number(group.settings.get(key))
            if x is None:
                continue
            rest = tuple((k, group.settings.get(k)) for k in comparison.swept if k != key)
            names[rest] = ", ".join(f"{k}={display(v)}" for k, v in rest if v is not None)
            lines[rest][x] += [v for v in group.values[metric] if v is not None and np.isfinite(v)]
        if len({x for line in lines.values() for x, ys in line.items() if ys}) < 2:
            continue
        # A search (Optuna's trials, a random sweep): no two runs share the other settings, so no line joins
        # two points. Then each run is a dot of one colour, and nothing is averaged across settings.
        scattered = len(lines) > 1 and all(sum(1 for ys in p.values() if ys) < 2 for p in lines.values())
        if scattered:
            pooled: dict[float, list[float]] = defaultdict(list)
            for points in lines.values():
                for x, ys in points.items():
                    pooled[x] += ys
            others = len(lines)
            lines, names = {(): pooled}, {(): ""}
        fig = Figure(figsize=(7 if len(lines) > LEGEND_INSIDE else 6, 4))
        ax = fig.subplots()
        xs_all = []
        for index, (rest, points) in enumerate(sorted(lines.items(), key=lambda item: names[item[0]])):
            xs = sorted(x for x, ys in points.items() if ys)
            xs_all += xs
            color = f"C{index % 10}"
            for x in xs:
                ax.scatter(
                    [x] * len(points[x]), points[x], color=color, alpha=0.5 if not scattered else 0.8, s=12
                )
            if not scattered:
                label = names[rest] or ("mean over seeds" if any(len(points[x]) > 1 for x in xs) else None)
                _band(ax, points, color, label)
        if min(xs_all) > 0 and max(xs_all) / min(xs_all) > LOG_SPAN:
            ax.set_xscale("log")
        ax.set_xlabel(key)
        ax.set_ylabel(metric)
        # The second line only when there is a "rest": a title that fits the figure (at 600 px the one-line
        # version was cut off at its right edge).
        if scattered:
            ax.set_title(
                f"{metric} against {key}\neach dot a run ({others}); no two share their other settings"
            )
            fig.tight_layout()
        else:
            others = len([n for n in names.values() if n])
            ax.set_title(
                f"{metric} against {key}"
                + (f"\none line per setting of the rest ({others})" if others else "")
            )
            _legend(fig, ax, others or 1)
        ax.grid(alpha=0.3)
        figures[key] = fig
    return figures
