"""A sweep at a glance, for any sweep (a `-m` grid, a stacked sweep, an Optuna study alike): which settings
matter, and where the good runs lie.

- `importance_views`: how much each swept setting moves the ranked metric, computed over the comparable runs
  (completed ones: a pruned run's value is an earlier epoch's), one view per loss function when the metric is a
  loss, with the number of runs it rests on. A full grid (every combination of the settings' values run) gets
  the exact functional-ANOVA answer: each setting's share of the variance of the cells' means explained by its
  main effect (`grid_importance`). Scattered runs get Optuna's PED-ANOVA, each run a trial of an in-memory
  study, and an Optuna search's folder Optuna's own over its study. PED-ANOVA asks where the top 10 % of
  trials lie, which on a handful of grid cells is one cell: on a 2x2 grid where the MLP beats the linear model
  at both lrs it gave the model 0.01.
- `parallel_coordinates_figure`: one vertical axis per swept setting and one for the metric; one line per
  row of the table (its mean over seeds), coloured by the metric, with a colour bar.
- `importance_figure`: the importances as bars, largest first.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass

import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure

from digitlab.analysis.plots import decade_ticks, natural_key, robust_norm
from digitlab.analysis.table import Comparison
from digitlab.console import shown_value as display

LOG_SPAN = 10  # as plots.py: values spanning more than this factor sit on a log scale


def _numbers(values: list) -> list[float] | None:
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError):
        return None


def _rows(comparison: Comparison, groups: list | None = None) -> list[tuple[dict, float]]:
    """`(settings, mean metric)` of each row (of `groups`, default all) with a finite mean."""
    rows = []
    for group in comparison.groups if groups is None else groups:
        value = group.mean(comparison.metric)
        if value is not None and math.isfinite(value):
            rows.append(({k: group.settings.get(k) for k in comparison.swept}, value))
    return rows


FEW_RUNS = 10  # below this many runs an importance is said to be a rough estimate


@dataclass
class Importance:
    """PED-ANOVA importances over the comparable runs of one block (one loss function's runs when the
    metric is a loss, else all): `setting -> importance`, largest first, summing to 1."""

    found: dict[str, float]
    runs: int  # the completed runs they were computed over
    block: str = ""  # e.g. `loss=bce`: the runs whose metric shares one scale
    of_study: bool = False  # Optuna's own, over the search's study (`study_importance`)
    grid: str = ""  # "2x3": a full grid's main effects (`grid_importance`); "" for PED-ANOVA
    explained: float = 1.0  # on a grid, the main effects' share of the variance (the rest: interactions)

    @property
    def method(self) -> str:
        return f"main effects over the full {self.grid} grid" if self.grid else "PED-ANOVA"

    @property
    def said(self) -> str:
        values = ", ".join(f"{name} {value:.2f}" for name, value in self.found.items())
        where = f" among {self.block}" if self.block else ""
        rough = f"; only {self.runs} runs: a rough estimate" if self.runs < FEW_RUNS else ""
        if self.of_study:
            return f"{values} (Optuna's own, over the {self.runs} completed trials of its study{rough})"
        rest = ""
        if self.grid and self.explained < 0.995:
            rest = f"; they explain {self.explained:.0%} of the variance between cells, interactions the rest"
        return f"{values} ({self.method}, over {self.runs} completed runs{where}{rough}{rest})"


def importance_views(comparison: Comparison) -> list[Importance]:
    """One `Importance` per block of comparable runs: completed runs only (a pruned run's value is taken at
    an earlier epoch than the others'), and within each loss function when the metric is a loss (its scale
    depends on it). Blocks with too few runs, or fewer than two varying settings, have none. An Optuna
    search's folder gets Optuna's own importance of its study (`study_importance`)."""
    own = study_importance(comparison)
    if own is not None:
        return [own]
    views = []
    blocks: dict[tuple, list] = {}
    for group in comparison.groups:
        blocks.setdefault(group.block, []).append(group)
    for block, groups in blocks.items():
        label = ", ".join(f"{k}={display(v)}" for k, v in zip(comparison.blocks, block, strict=True))
        view = importances(comparison, groups)
        if view is not None:
            view.block = label
            views.append(view)
    return views


def study_importance(comparison: Comparison) -> Importance | None:
    """For the folder of an Optuna search (its `study.journal` beside the runs, one single-objective study
    optimizing the ranked metric): Optuna's own PED-ANOVA importance over the study's completed trials, in
    the study's own search space, read without writing (`open_storage(repair=False)`)."""
    import optuna

    from digitlab.sweeps.study import JOURNAL, open_storage

    journal = comparison.root / JOURNAL
    if not journal.is_file():
        return None
    try:
        storage = open_storage(journal, repair=False)
        (summary,) = optuna.get_all_study_summaries(storage, include_best_trial=False)
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
    except Exception:  # several studies, a damaged journal: the runs' own importance instead
        return None
    runs = [run for run in comparison.runs if not run.unreadable]
    optimized = runs[0].setting("optimized_metric") if runs else None
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(study.directions) != 1 or optimized != comparison.metric or len(complete) < 4:
        return None
    if len({name for trial in complete for name in trial.params}) < 2:
        return None
    with warnings.catch_warnings():  # PED-ANOVA is experimental in Optuna 4
        warnings.simplefilter("ignore")
        found = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.PedAnovaImportanceEvaluator(), normalize=True
        )
    if not found or not all(math.isfinite(v) for v in found.values()) or sum(found.values()) <= 0:
        return None
    return Importance(dict(sorted(found.items(), key=lambda item: -item[1])), len(complete), of_study=True)


def importances(comparison: Comparison, groups: list | None = None) -> Importance | None:
    """The importances over `groups` (default: all) of `comparison`, from their completed runs only; None
    when fewer than two settings vary among them or too few runs completed to tell."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    from digitlab.rundir import COMPLETED

    groups = comparison.groups if groups is None else groups
    values_of = {
        id(group): [
            run.metrics.get(comparison.metric)
            for run in group.runs
            if run.status == COMPLETED and _finite(run.metrics.get(comparison.metric))
        ]
        for group in groups
    }
    groups = [group for group in groups if values_of[id(group)]]
    distributions = {}
    for key in comparison.swept:
        if key in comparison.blocks:
            continue  # one value within a block
        values = [g.settings.get(key) for g in groups]
        numbers = _numbers(values)
        if numbers is not None and len(set(numbers)) > 1:
            low, high = min(numbers), max(numbers)
            distributions[key] = FloatDistribution(low, high, log=low > 0 and high / low > LOG_SPAN)
        elif len({display(v) for v in values}) > 1:
            distributions[key] = CategoricalDistribution(sorted({display(v) for v in values}))
    minimize = comparison.metric.endswith(("loss", "time_s", "parameters"))
    optuna_log = logging.getLogger("optuna")
    level = optuna_log.level
    optuna_log.setLevel(logging.WARNING)  # "A new study created in memory": not news here
    try:
        study = optuna.create_study(direction="minimize" if minimize else "maximize")
    finally:
        optuna_log.setLevel(level)
    if len(distributions) < 2:
        return None
    cells: dict[tuple, list[float]] = {}  # the same settings reached from two sweeps are one cell
    for group in groups:
        cell = tuple(display(group.settings.get(key)) for key in distributions)
        cells.setdefault(cell, []).extend(values_of[id(group)])
    runs = sum(len(values) for values in cells.values())
    on_grid = grid_importance(list(distributions), cells)
    if on_grid is not None:
        found, shape, explained = on_grid
        return Importance(found, runs, grid=shape, explained=explained) if runs >= 4 else None
    for group in groups:
        params = {
            key: float(group.settings[key])
            if isinstance(d, FloatDistribution)
            else display(group.settings.get(key))
            for key, d in distributions.items()
        }
        for value in values_of[id(group)]:
            study.add_trial(
                optuna.trial.create_trial(params=params, distributions=distributions, value=value)
            )
    if len(study.trials) < 4:
        return None
    with warnings.catch_warnings():  # PED-ANOVA is experimental in Optuna 4; a small sweep draws its warnings
        warnings.simplefilter("ignore")
        evaluator = optuna.importance.PedAnovaImportanceEvaluator()
        found = optuna.importance.get_param_importances(study, evaluator=evaluator, normalize=True)
    if not all(math.isfinite(v) for v in found.values()) or sum(found.values()) <= 0:
        return None  # every run alike: nothing to rank
    return Importance(dict(sorted(found.items(), key=lambda item: -item[1])), len(study.trials))


def grid_importance(
    keys: list[str], cells: dict[tuple, list[float]]
) -> tuple[dict[str, float], str, float] | None:
    """Functional ANOVA on a full grid, exactly: with every cell (combination of the settings' values) run
    once or more, each setting's main effect is the variance, over its values, of the metric's mean over the
    other settings' cells (each cell weighted alike, by its mean over seeds). `(setting -> share of the summed
    main effects, largest first; "2x3"; the main effects' share of the cells' variance)`, or None when the cells are not a full grid or no setting has an
    effect (all alike, or only interactions)."""
    levels = [sorted({cell[i] for cell in cells}) for i in range(len(keys))]
    if len(cells) != math.prod(len(values) for values in levels) or len(cells) < 4:
        return None
    means = {cell: float(np.mean(values)) for cell, values in cells.items()}
    grand = float(np.mean(list(means.values())))
    effects = {}
    for i, key in enumerate(keys):
        marginal = [np.mean([m for cell, m in means.items() if cell[i] == level]) for level in levels[i]]
        effects[key] = float(np.mean([(m - grand) ** 2 for m in marginal]))
    total = sum(effects.values())
    if not math.isfinite(total) or total <= 0:
        return None
    found = {key: effect / total for key, effect in sorted(effects.items(), key=lambda item: -item[1])}
    variance = float(np.mean([(m - grand) ** 2 for m in means.values()]))
    shape = "x".join(str(len(values)) for values in levels)
    return found, shape, min(1.0, total / variance)


def _label(value: object) -> str:
    return "-" if value is None else display(value)


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def importance_figure(comparison: Comparison, view: Importance) -> Figure:
    found = view.found
    fig = Figure(figsize=(6, 0.6 * len(found) + 1.6), layout="constrained")
    ax = fig.subplots()
    names = list(found)[::-1]
    ax.barh(names, [found[n] for n in names], color="C0")
    for y, name in enumerate(names):
        ax.text(found[name], y, f" {found[name]:.2f}", va="center", fontsize=8)
    ax.set_xlim(0, max(1.0, max(found.values()) * 1.15))
    method = "Optuna's PED-ANOVA" if view.of_study else view.method
    ax.set_xlabel(f"importance for {comparison.metric}\n({method}; sums to 1)")
    among = f", {view.block}" if view.block else ""
    rough = " (few: rough)" if view.runs < FEW_RUNS else ""
    rest = f"; interactions {1 - view.explained:.0%}" if view.grid and view.explained < 0.995 else ""
    ax.set_title(f"What matters{among}: {view.runs} completed runs{rough}{rest}")
    ax.grid(axis="x", alpha=0.3)
    return fig


def parallel_coordinates_figures(comparison: Comparison) -> dict[str, Figure]:
    """`block label -> figure` ("" when the runs form one block): one figure per loss function when the
    metric is a loss, so that one colour scale never spans two losses' scales."""
    blocks: dict[tuple, list] = {}
    for group in comparison.groups:
        blocks.setdefault(group.block, []).append(group)
    figures = {}
    for block, groups in blocks.items():
        label = ", ".join(f"{k}={display(v)}" for k, v in zip(comparison.blocks, block, strict=True))
        figure = parallel_coordinates_figure(comparison, groups, label)
        if figure is not None:
            figures[label] = figure
    return figures


def parallel_coordinates_figure(
    comparison: Comparison, groups: list | None = None, among: str = ""
) -> Figure | None:
    """None for fewer than two swept settings (the metric-vs-setting plot says it all then)."""
    rows = _rows(comparison, groups)
    swept = [key for key in comparison.swept if key not in comparison.blocks]
    if len(swept) < 2 or len(rows) < 2:
        return None
    axes_keys = [*swept, comparison.metric]
    positions: dict[str, list[float]] = {}
    ticks: dict[str, list[tuple[float, str]]] = {}
    for key in axes_keys:
        values = [value if key == comparison.metric else settings.get(key) for settings, value in rows]
        numbers = _numbers(values)
        if numbers is not None:
            low, high = min(numbers), max(numbers)
            log = low > 0 and high / low > LOG_SPAN

            def place(v: float, low=low, high=high, log=log) -> float:
                scaled = [math.log10(x) if log else x for x in (v, low, high)]
                return (scaled[0] - scaled[1]) / ((scaled[2] - scaled[1]) or 1.0)

            positions[key] = [place(v) for v in numbers]
            if len(set(numbers)) <= 6:
                shown = sorted(set(numbers))
            else:  # decades on a log axis (0.01, 0.1, 1), else five even steps
                shown = decade_ticks(low, high) if log else list(np.linspace(low, high, 5))
            ticks[key] = [(place(v), display(float(v))) for v in shown]
        else:  # numbers in numeric order (16 before 128), then the rest ("-": a setting the model lacks)
            labels = [_label(v) for v in sorted({_label(v): v for v in values}.values(), key=natural_key)]
            where = {label: i / max(1, len(labels) - 1) for i, label in enumerate(labels)}
            positions[key] = [where[_label(v)] for v in values]
            ticks[key] = [(where[label], label) for label in labels]
    fig = Figure(figsize=(2.2 * len(axes_keys) + 1.5, 4.8), layout="constrained")
    ax = fig.subplots()
    metric_values = [value for _, value in rows]
    norm, extend = robust_norm(metric_values)
    cmap = colormaps["viridis_r" if comparison.metric.endswith("loss") else "viridis"]
    order = sorted(range(len(rows)), key=lambda i: metric_values[i])  # the best drawn last, on top
    if comparison.metric.endswith("loss"):
        order.reverse()
    xs = list(range(len(axes_keys)))
    for i in order:
        ax.plot(xs, [positions[key][i] for key in axes_keys], color=cmap(norm(metric_values[i])), alpha=0.85)
    for x, key in enumerate(axes_keys):
        ax.axvline(x, color="0.3", linewidth=1)
        for y, label in ticks[key]:
            ax.text(
                x + 0.04,
                y,
                label,
                fontsize=8,
                va="center",
                ha="left",
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.7, "pad": 1},
            )
    ax.set_xticks(xs, axes_keys)
    ax.set_yticks([])
    ax.set_xlim(-0.2, len(axes_keys) - 0.6)
    ax.set_ylim(-0.06, 1.06)
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, pad=0.02, extend=extend)
    clipped = "" if extend == "neither" else ", 5th-95th percentile"
    bar.set_label(f"{comparison.metric} (mean over seeds{clipped})")
    runs = sum(len(group.runs) for group in (comparison.groups if groups is None else groups))
    where = f" ({among})" if among else ""
    ax.set_title(f"{len(rows)} settings of {runs} runs{where}, one line each", fontsize=10)
    return fig
