"""The comparison's plots, drawn on a `matplotlib.figure.Figure` (no pyplot, no global backend: a notebook
that calls these keeps its own). Every line is one group of runs (the same settings but the seed): its mean
over seeds, with a band of one standard deviation; a line never averages runs of different settings.
Kept rather than `optuna.visualization.matplotlib`, whose plots read a study's trials: a grid sweep or a
logs/ folder has run folders and no study, and its rows are groups over seeds.

- `curves_figure`: a metric per epoch, one line per group; past `TOP` groups the best `TOP` are drawn in
  colour and the rest in grey under one legend entry.
- `metric_vs_param_figures`: the ranked metric against each swept number, one line per combination of the
  other settings (`model=linear`, `model=mlp`), each run a dot; a log axis where the values span decades.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from digitlab.analysis.table import Comparison, Group
from digitlab.console import shown_value as display
from digitlab.rundir import COMPLETED, Run

LOG_SPAN = 10  # a swept number whose values span more than this factor is drawn on a log axis
LEGEND_INSIDE = 6  # up to this many legend entries fit inside the axes; more go in a column beside it
TOP = 10  # curves drawn in colour; the other groups are grey


LABEL_CHARS = 60  # a legend label longer than this is the table's rank alone (`#3`): legends stay narrow


def natural_key(value) -> tuple:
    """Sort key: numbers by value (16 before 128), then anything else as text."""
    number = _number(value)
    return (0, number, "") if number is not None else (1, 0.0, display(value))


def decade_ticks(low: float, high: float) -> list[float]:
    """Ticks for a log axis from `low` to `high`: the powers of ten between them (1, 2 and 5 times them
    when fewer than two powers fall inside)."""
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    for steps in ((1,), (1, 2, 5)):
        ticks = [m * 10.0**k for k in range(first, last + 1) for m in steps if low <= m * 10.0**k <= high]
        if len(ticks) >= 2:
            return ticks
    return [low, high]


def robust_norm(values: list[float]) -> tuple[Normalize, str]:
    """A colour scale one outlier does not wash out: the 5th to 95th percentile of `values` (all of them for
    fewer than 10, where a percentile is a value or two), and the colour bar's `extend` for what lies beyond."""
    low, high = min(values), max(values)
    if len(values) >= 10:
        low, high = (float(v) for v in np.percentile(values, [5, 95]))
    if low == high:
        low, high = min(values), max(values)
    extend = {(False, False): "neither", (True, False): "min", (False, True): "max", (True, True): "both"}
    return Normalize(low, high), extend[(min(values) < low, max(values) > high)]


def ranks(comparison: Comparison) -> dict[int, int]:
    """`id(group) -> its rank in the table` (ranks restart in each block of a loss)."""
    found, rank, block = {}, 0, None
    for group in comparison.groups:
        rank = rank + 1 if group.block == block else 1
        block = group.block
        found[id(group)] = rank
    return found


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
    """Inside the axes for a few entries, else in a column beside them (the figure's constrained layout makes
    room for it; labels are kept short, `LABEL_CHARS`, so it never outgrows the axes)."""
    if entries > LEGEND_INSIDE:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    elif entries and ax.get_legend_handles_labels()[1]:
        ax.legend(fontsize=8, loc="best")


def _group_label(comparison: Comparison, group: Group, shown: list[Group], rank: int) -> str:
    """`#rank` and the settings that differ among the `shown` groups (not those every shown group shares);
    the rank alone when that is too long for a legend. `(n=...)` for several seeds, `[pruned]` and the like."""
    varying = [
        key
        for key in comparison.swept
        if len({display(g.settings.get(key)) for g in shown}) > 1 or len(shown) == 1
    ]
    said = ", ".join(
        f"{_short(k, varying)}={display(group.settings[k])}" for k in varying if k in group.settings
    )
    if group.where and (len(shown) == 1 or len({g.where for g in shown}) > 1):
        said = f"{said}, in {group.where}" if said else f"in {group.where}"
    label = f"#{rank} {said}".strip() if said and len(said) <= LABEL_CHARS else f"#{rank}"
    if len(group.runs) > 1:
        label += f" (n={len(group.runs)})"
    if comparison.shows_status and group.status != COMPLETED:
        label += f" [{group.status}]"  # pruned curves end early on purpose
    return label


def _short(key: str, keys: list[str]) -> str:
    """`model.net.hidden` -> `hidden` in a legend, when no other key of `keys` ends the same way."""
    last = key.rsplit(".", 1)[-1]
    return last if sum(k.rsplit(".", 1)[-1] == last for k in keys) == 1 else key


def curves_figure(comparison: Comparison, tag: str = "val/acc") -> Figure:
    """`tag` per epoch, one line (mean over seeds, ±1 std band) per group, in ranked order."""
    groups = comparison.groups
    shown = min(len(groups), TOP)
    beside = shown > LEGEND_INSIDE
    fig = Figure(figsize=(11 if beside else 8, 4.5), layout="constrained")
    ax = fig.subplots()
    others = 0
    rank = ranks(comparison)
    for index, group in enumerate(groups):
        series = [s for s in (epoch_series(run, tag) for run in group.runs) if s]
        if not series:
            continue
        if index < TOP:
            points = {x: [s[x] for s in series if x in s] for x in {x for s in series for x in s}}
            label = _group_label(comparison, group, groups[:TOP], rank[id(group)])
            _band(ax, points, f"C{index % 10}", label)
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
    spread = "\nmean ± std over seeds" if any(len(g.runs) > 1 for g in groups) else ""
    ax.set_title(
        title + spread + ("; # = the table's rank" if spread else "\n# = the table's rank"), fontsize=10
    )
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
    the other swept settings (mean over seeds, ±1 std band), each run a dot; one panel per block of
    comparable runs (per loss function when the metric is a loss: two losses never share an axis)."""
    figures = {}
    blocks: dict[tuple, list[Group]] = {}
    for group in comparison.groups:
        blocks.setdefault(group.block, []).append(group)
    for key in comparison.swept:
        if key in comparison.blocks:
            continue
        panels = [(block, _lines(comparison, key, groups)) for block, groups in blocks.items()]
        panels = [(block, lines) for block, lines in panels if _plottable(lines)]
        if not panels:
            continue
        wide = max(len(lines) for _, lines in panels) > LEGEND_INSIDE
        fig = Figure(figsize=((7 if wide else 6) * len(panels), 4), layout="constrained")
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        for ax, (block, lines) in zip(axes, panels, strict=True):
            among = ", ".join(f"{k}={display(v)}" for k, v in zip(comparison.blocks, block, strict=True))
            _metric_vs_param_panel(fig, ax, comparison.metric, key, lines, among)
        figures[key] = fig
    return figures


def _lines(comparison: Comparison, key: str, groups: list[Group]) -> dict[tuple, dict[float, list[float]]]:
    """`rest -> x -> values`: the metric's values at each value x of `key`, per combination of the other
    swept settings (`rest`: `((setting, value), ...)`)."""
    lines: dict[tuple, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for group in groups:
        x = _number(group.settings.get(key))
        if x is None:
            continue
        rest = tuple(
            (k, group.settings.get(k)) for k in comparison.swept if k != key and k not in comparison.blocks
        )
        lines[rest][x] += [v for v in group.values[comparison.metric] if v is not None and np.isfinite(v)]
    return lines


def _plottable(lines: dict[tuple, dict[float, list[float]]]) -> bool:
    return len({x for line in lines.values() for x, ys in line.items() if ys}) >= 2


def _metric_vs_param_panel(fig: Figure, ax, metric: str, key: str, lines: dict, among: str) -> None:
    names = {rest: ", ".join(f"{k}={display(v)}" for k, v in rest if v is not None) for rest in lines}
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
    ordered = sorted(lines.items(), key=lambda item: tuple(natural_key(v) for _, v in item[0]))
    palette = colormaps["tab20"] if len(ordered) > 10 else None  # more lines than C0-C9: no colour repeats
    xs_all = []
    for index, (rest, points) in enumerate(ordered):
        xs = sorted(x for x, ys in points.items() if ys)
        xs_all += xs
        color = palette(index % 20) if palette else f"C{index}"
        for x in xs:
            ax.scatter(
                [x] * len(points[x]), points[x], color=color, alpha=0.5 if not scattered else 0.8, s=12
            )
        if not scattered:
            label = names[rest] or ("mean over seeds" if any(len(points[x]) > 1 for x in xs) else None)
            _band(ax, points, color, label)
    if min(xs_all) > 0 and max(xs_all) / min(xs_all) > LOG_SPAN:
        ax.set_xscale("log")  # matplotlib's log locator: ticks at the decades
    ax.set_xlabel(key)
    ax.set_ylabel(metric)
    first = f"{metric} against {key}" + (f" ({among})" if among else "")
    if scattered:
        ax.set_title(f"{first}\neach dot a run ({others}); no two share their other settings", fontsize=10)
    else:
        count = len([n for n in names.values() if n])
        ax.set_title(first + (f"\none line per setting of the rest ({count})" if count else ""), fontsize=10)
        _legend(fig, ax, count or 1)
    ax.grid(alpha=0.3)
