"""The comparison of runs, grouped by what really differs between them: each run's resolved config
(`config.json`), not the override strings that were typed (`optimizer.lr=1` and `optimizer.lr=1.0` are one
setting; `model=mlp` typed or chosen by an experiment is one model). Runs whose trained settings are equal but
for the seed form one `Group` (mean, standard deviation, n). The table's columns are the settings that differ
among the compared runs: a group choice (`model`, `optimizer`, ...) when options of a group were compared, and
each value that differs beyond what those choices explain (`model.net.hidden` among MLPs, `optimizer.lr`).

A metric whose scale depends on a setting (a loss, on the loss function) is ranked within each value of that
setting, never across them: the blocks are ranked apart and the output says so.

Runs of an Optuna search also show their `status` (completed, pruned, incomplete: pruned ones rank after the
completed ones, as their metric stopped early). When the runs optimized several metrics (a list in
`optimized_metric`, with the sweeper's list of directions), the rows on the Pareto front are marked and ranked
first. Rendered as Markdown and CSV here; plotted by `plots.py`.
"""

from __future__ import annotations

import csv
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from digitlab.config.hparams import group_choices, trained_settings
from digitlab.console import shown_value as display
from digitlab.errors import DigitlabError
from digitlab.rundir import COMPLETED, PRUNED, Run, find_runs

SEED = "seed"
WHERE = "runs in"  # the column that tells rows apart by where their runs sit, when settings do not
# The final record's columns, the ranked metric first among them; each val/ metric with its spread.
COLUMNS = ("val/acc_best", "val/acc", "val/loss", "epochs", "wall_time_s")
# Metrics on a scale set by a group's settings: a loss means nothing across loss functions.
SCALED_BY = {"loss": "loss"}


@dataclass
class Group:
    """Runs with the same trained settings except the seed."""

    settings: dict[str, Any]  # the comparison's columns -> this group's value
    runs: list[Run] = field(default_factory=list)
    values: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    block: tuple = ()  # the values of the settings the ranked metric's scale depends on
    pareto: bool = False
    where: str = ""  # where its runs sit, when its settings alone do not tell it apart (`WHERE`)

    @property
    def label(self) -> str:
        said = [f"{k}={display(v)}" for k, v in self.settings.items()]
        return ", ".join([*said, f"in {self.where}"] if self.where else said)

    @property
    def completed(self) -> list[Run]:
        return [run for run in self.runs if run.completed]

    @property
    def status(self) -> str:
        """The distinct statuses of its runs (`completed`, `pruned`, `incomplete`)."""
        return ",".join(dict.fromkeys(run.status for run in self.runs))

    def mean(self, key: str) -> float | None:
        values = [v for v in self.values[key] if v is not None and math.isfinite(v)]
        return statistics.fmean(values) if values else None

    def std(self, key: str) -> float | None:
        values = [v for v in self.values[key] if v is not None and math.isfinite(v)]
        return statistics.stdev(values) if len(values) > 1 else None


@dataclass
class Comparison:
    root: Path
    metric: str
    swept: list[str]  # the settings that differ between runs (group choices, then values), seed excluded
    groups: list[Group]
    runs: list[Run]
    objectives: list[tuple[str, str]] = field(default_factory=list)  # (metric, direction), multi-objective
    blocks: list[str] = field(default_factory=list)  # the columns the metric is ranked within

    @property
    def shows_status(self) -> bool:
        return any(run.status != COMPLETED for run in self.runs)

    @property
    def metrics(self) -> list[str]:
        """The metric columns: the ranked (and optimized) ones first, then the standard ones."""
        names = [name for name, _ in self.objectives] or [self.metric]
        return list(dict.fromkeys([*names, *COLUMNS]))

    @property
    def annotated(self) -> bool:
        """Whether any run carries tags or notes (then the table shows them)."""
        return any(run.setting("tags") or run.setting("notes") for run in self.runs)

    @property
    def codes(self) -> dict[Path, str]:
        """Each readable run's code (`provenance.short`): shown when the runs come from different commits."""
        from digitlab.provenance import short

        return {run.path: short(run.provenance) for run in self.runs if not run.unreadable}

    def rows(self) -> list[dict[str, Any]]:
        """One row per group, numbers as numbers (CSV); `markdown` renders them for people."""
        rows = []
        codes = self.codes
        mixed_code = len(set(codes.values())) > 1
        rank, block = 0, None
        for group in self.groups:
            rank = rank + 1 if group.block == block else 1
            block = group.block
            seeds = [str(run.setting(SEED)) for run in group.completed]
            row: dict[str, Any] = {"rank": rank}
            row |= {k: display(group.settings[k]) if k in group.settings else "-" for k in self.swept}
            if any(g.where for g in self.groups):
                row[WHERE] = group.where or "-"
            row |= {"runs": f"{len(group.completed)}/{len(group.runs)}", "seeds": ",".join(seeds)}
            if self.shows_status:
                row["status"] = group.status
            if self.objectives:
                row["pareto"] = "yes" if group.pareto else ""
            if mixed_code:
                row["code"] = ",".join(dict.fromkeys(codes.get(r.path, "-") for r in group.runs))
            if self.annotated:
                row |= {
                    "tags": _joined(r.setting("tags") for r in group.runs),
                    "notes": _joined([r.setting("notes")] for r in group.runs),
                }
            for column in self.metrics:
                row[column] = group.mean(column)
                if column == "epochs" and row[column] is not None:
                    row[column] = round(row[column])
                elif column == "wall_time_s" and row[column] is not None:
                    row[column] = round(row[column], 1)
                elif _spread(column):
                    row[f"{column} std"] = group.std(column)
            rows.append(row)
        return rows


def _spread(column: str) -> bool:
    return column not in ("epochs", "wall_time_s", "parameters")


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
    readable = [run for run in runs if not run.unreadable]  # a damaged run is listed, never read further
    if not readable:
        raise DigitlabError(
            f"no run under {str(root)!r} can be read: "
            + "; ".join(f"{run.path.name}: {run.unreadable}" for run in runs[:5])
        )
    chosen = metric
    optimized = readable[0].setting("optimized_metric")
    objectives: list[tuple[str, str]] = []
    if metric is None and isinstance(optimized, list):
        direction = readable[0].hydra.get("sweeper", {}).get("direction")
        if isinstance(direction, list) and len(direction) == len(optimized):
            objectives = list(zip(optimized, direction, strict=True))
        optimized = optimized[0]
    metric = metric or optimized or "val/acc_best"
    finished = [run for run in readable if run.completed]
    if chosen is not None and finished and chosen not in COLUMNS:
        present = sorted({name for run in finished for name in run.metrics})
        if chosen not in present:
            raise DigitlabError(
                f"--metric {chosen!r} is not a metric of any run under {str(root)!r}. The runs have: "
                f"{', '.join(present)}."
            )

    settings = {run.path: run_settings(run) for run in runs}
    swept = differing([settings[run.path] for run in readable])
    scale = SCALED_BY.get(_kind(metric))
    blocks = [key for key in swept if scale and (key == scale or key.startswith(f"{scale}."))]
    groups: dict[tuple, Group] = {}
    for run in readable:  # an unreadable run is listed apart (`Run.unreadable`), in no group
        mine = settings[run.path]
        identity = tuple(_hashable(mine.get(k)) for k in swept)
        group = groups.setdefault(identity, Group({k: mine[k] for k in swept if k in mine}))
        group.block = tuple(_hashable(mine.get(k)) for k in blocks)
        group.runs.append(run)
        if run.completed:
            for column in {*COLUMNS, metric, *(name for name, _ in objectives)}:
                group.values[column].append(run.metrics.get(column))
    found = _split_repeated_seeds(list(groups.values()), root)
    if not swept:  # nothing varies: each row says which runs it holds by their folder
        for group in found:
            group.where = _where(group.runs, root)
    if objectives:
        _mark_pareto(found, objectives)

    def rank_key(group: Group) -> tuple:
        value = group.mean(metric)
        better = value if value is None or _minimized(metric) else -value
        pruned_only = all(run.status == PRUNED for run in group.completed) and bool(group.completed)
        block = tuple(display(v) for v in group.block)
        return (block, value is None, not group.pareto, pruned_only, better if better is not None else 0.0)

    ranked = sorted(found, key=rank_key)
    return Comparison(root, metric, swept, ranked, runs, objectives, blocks)


def _split_repeated_seeds(groups: list[Group], root: Path) -> list[Group]:
    """A group whose runs repeat a seed holds the same (settings, seed) reached by two sweeps: a mean and a
    std over duplicates would mislead, so such a group is shown once per folder its runs sit in (the `runs
    in` column says which)."""
    out = []
    for group in groups:
        seeds = [str(run.setting(SEED)) for run in group.runs]
        if len(set(seeds)) == len(seeds):
            out.append(group)
            continue
        by_folder: dict[Path, Group] = {}
        for run in group.runs:
            part = by_folder.get(run.path.parent)
            if part is None:
                part = Group(group.settings, block=group.block, where=_where([run], root, folder=True))
                by_folder[run.path.parent] = part
            part.runs.append(run)
            for column in group.values if run.completed else ():
                part.values[column].append(run.metrics.get(column))
        out += by_folder.values()
    return out


def _where(runs: list[Run], root: Path, folder: bool = False) -> str:
    """Where `runs` sit, relative to the compared folder: the run's own folder for one run, else the folder
    holding them (`folder`: that folder even for one run)."""
    paths = {run.path.parent for run in runs} if folder or len(runs) > 1 else {runs[0].path}
    shown = [str(p.relative_to(root)) if p != root and root in p.parents else p.name for p in paths]
    return ",".join(sorted(shown)) or "."


def _kind(metric: str) -> str:
    """`val/loss_best` -> `loss`: what a metric measures, whatever split it was taken on."""
    name = metric.rsplit("/", 1)[-1]
    return "loss" if "loss" in name else name


def run_settings(run: Run) -> dict[str, Any]:
    """A run's trained settings (the seed apart) and its group choices (`model` -> `mlp`), by key."""
    if run.unreadable:
        return {}
    return group_choices((run.hydra.get("runtime") or {}).get("choices")) | trained_settings(run.config)


def differing(settings: list[dict[str, Any]]) -> list[str]:
    """The keys to tell these runs apart by: each group choice that differs, then each value that differs
    and is not one function of the differing choices (`model.net._target_` follows `model`; `optimizer.lr`
    does not). A key a run lacks counts as a value of its own."""
    keys = sorted({key for s in settings for key in s})
    varies = [k for k in keys if len({_hashable(s.get(k)) for s in settings}) > 1]
    choices = [k for k in varies if "." not in k]
    values = []
    for key in varies:
        if "." not in key:
            continue
        by_choice: dict[tuple, set] = defaultdict(set)
        for s in settings:
            by_choice[tuple(_hashable(s.get(c)) for c in choices)].add(_hashable(s.get(key)))
        if not choices or any(len(seen) > 1 for seen in by_choice.values()):
            values.append(key)
    return choices + values


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _minimized(metric: str) -> bool:
    """Lower is better for losses, times and sizes; higher for everything else (accuracies)."""
    return metric.endswith(("loss", "loss_best", "time_s", "parameters"))


def _mark_pareto(groups: list[Group], objectives: list[tuple[str, str]]) -> None:
    """Mark the completed (not pruned) groups no other such group beats in every objective."""
    signs = [1.0 if direction == "minimize" else -1.0 for _, direction in objectives]
    points = {}
    for group in groups:
        values = [group.mean(name) for name, _ in objectives]
        if group.completed and all(run.status == COMPLETED for run in group.completed) and None not in values:
            points[id(group)] = [sign * value for sign, value in zip(signs, values, strict=True)]
    for group in groups:
        mine = points.get(id(group))
        group.pareto = mine is not None and not any(
            all(o <= m for o, m in zip(other, mine, strict=True)) and other != mine
            for other in points.values()
        )


def _joined(lists) -> str:
    """Distinct non-empty values of several runs' lists, in first-seen order."""
    seen: dict[str, None] = {}
    for values in lists:
        for value in values or []:
            if value:
                seen[str(value)] = None
    return ",".join(seen)


def _fmt(column: str, value: Any, spread: Any = None) -> str:
    if value is None:
        return "-"
    if column == "wall_time_s":
        return f"{value:.1f}"
    if isinstance(value, float):
        text = f"{value:.4f}"
        return f"{text} ± {spread:.4f}" if isinstance(spread, float) else text
    return str(value)


def markdown(comparison: Comparison) -> str:
    """The table for people: each metric's mean and standard deviation in one cell (`0.9622 ± 0.0031`)."""
    rows = comparison.rows()
    headers = [h for h in rows[0] if not h.endswith(" std")]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_fmt(h, row[h], row.get(f"{h} std")) for h in headers) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def ranking_note(comparison: Comparison) -> str | None:
    """Why the ranks restart, when the ranked metric's scale differs between blocks of runs."""
    if not comparison.blocks:
        return None
    return (
        f"{comparison.metric} is on a different scale for each {', '.join(comparison.blocks)}: the runs are "
        f"ranked within each, not across them."
    )


def write_csv(comparison: Comparison, path: Path) -> None:
    from digitlab.atomic import text_file

    rows = comparison.rows()
    with text_file(path, newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
