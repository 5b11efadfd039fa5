"""The comparison's plots, drawn on a `matplotlib.figure.Figure` (no pyplot, no global backend: a notebook
that calls these keeps its own): the curves of every run, and the ranked metric against each swept number."""

from __future__ import annotations

import statistics
from collections import defaultdict

from matplotlib.figure import Figure

from digitlab.analysis.table import Comparison
from digitlab.rundir import COMPLETED

LOG_SPAN = 10  # a swept number whose values span more than this factor is drawn on a log axis
LEGEND_INSIDE = 8  # up to this many legend entries fit inside the axes; more go in a column beside it


def curves_figure(comparison: Comparison, tag: str = "val/acc") -> Figure:
    """One curve per run; the seeds of one setting share a colour and one legend entry."""
    groups = comparison.groups
    beside = len(groups) > LEGEND_INSIDE
    fig = Figure(figsize=(11 if beside else 8, 4.5))
    ax = fig.subplots()
    colors = [f"C{i % 10}" for i in range(len(groups))]
    styles = ["-", "--", ":", "-."]
    for index, group in enumerate(groups):
        label = ", ".join(f"{k}={v}" for k, v in group.settings.items()) or comparison.root.name
        if len(group.runs) > 1:
            label += f" ({len(group.runs)} seeds)"
        if comparison.shows_status and group.status != COMPLETED:
            label += f" [{group.status}]"  # pruned curves end early on purpose
        style = styles[(index // 10) % len(styles)]  # past 10 groups, colours repeat with another line style
        for i, run in enumerate(group.runs):
            points = run.scalars.get(tag, [])
            if points:
                steps, values = zip(*points, strict=True)
                ax.plot(
                    steps,
                    values,
                    style,
                    color=colors[index],
                    alpha=0.8,
                    marker="." if len(points) == 1 else None,
                    label=label if i == 0 else None,
                )
    ax.set_xlabel("step")
    ax.set_ylabel(tag)
    ax.set_title(f"{tag} per run ({len(comparison.runs)} runs, {len(groups)} settings)")
    ax.grid(alpha=0.3)
    if beside:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    else:
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def metric_vs_param_figures(comparison: Comparison) -> dict[str, Figure]:
    """The ranked metric against each swept numeric parameter (`key -> Figure`): one dot per run, a line
    through the means over seeds."""
    figures = {}
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
        fig = Figure(figsize=(6, 4))
        ax = fig.subplots()
        ax.scatter([x for x, _ in points], [y for _, y in points], alpha=0.6, label="runs")
        means = defaultdict(list)
        for x, y in points:
            means[x].append(y)
        xs = sorted(means)
        ax.plot(xs, [statistics.fmean(means[x]) for x in xs], "-", color="black", label="mean over seeds")
        if min(xs) > 0 and max(xs) / min(xs) > LOG_SPAN:
            ax.set_xscale("log")
        ax.set_xlabel(key)
        ax.set_ylabel(comparison.metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        figures[key] = fig
    return figures
