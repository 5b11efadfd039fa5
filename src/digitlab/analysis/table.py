"""The comparison of runs: the overrides that differ between them, final and best val/acc and val/loss,
epochs and wall time, ranked by a metric. Runs that differ only in `seed` form one row (a `Group`) with mean
and standard deviation. Rendered as Markdown and CSV here; plotted by `plots.py`.

Runs of an Optuna search also show their `status` (completed, pruned, incomplete: pruned ones rank after the
completed ones, as their metric stopped early). When the runs optimized several metrics (a list in
`optimized_metric`, with the sweeper's list of directions), the rows on the Pareto front are marked and ranked
first.
"""

from __future__ import annotations

import csv
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from digitlab.config.hparams import is_plumbing
from digitlab.errors import DigitlabError
from digitlab.rundir import COMPLETED, PRUNED, Run, find_runs

SEED = "seed"


def parse_overrides(overrides: list[str]) -> dict[str, str]:
    """The settings an override list chose: Hydra's own and plumbing keys left out (tags and notes, plumbing
    too, get columns of their own)."""
    settings = {}
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        if not key.startswith(("hydra.", "hydra/")) and not is_plumbing(key):
            settings[key] = value
    return settings


@dataclass
class Group:
    """Runs with the same settings except the seed."""

    settings: dict[str, str]
    runs: list[Run] = field(default_factory=list)
    values: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    pareto: bool = False

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


COLUMNS = ("val/acc", "val/acc_best", "val/loss", "val/loss_best", "epochs", "wall_time_s")


@dataclass
class Comparison:
    root: Path
    metric: str
    swept: list[str]  # override keys that differ between runs, seed excluded
    groups: list[Group]
    runs: list[Run]
    objectives: list[tuple[str, str]] = field(default_factory=list)  # (metric, direction), multi-objective

    @property
    def shows_status(self) -> bool:
        return any(run.status != COMPLETED for run in self.runs)

    @property
    def extra_metrics(self) -> list[str]:
        """Ranked-by metrics that are not among the standard columns (e.g. `parameters`)."""
        names = [name for name, _ in self.objectives] or [self.metric]
        return [name for name in names if name not in COLUMNS]

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
        rows = []
        codes = self.codes
        mixed_code = len(set(codes.values())) > 1
        for rank, group in enumerate(self.groups, start=1):
            seeds = [str(run.setting(SEED)) for run in group.completed]
            row: dict[str, Any] = {"rank": rank, **{k: group.settings.get(k, "-") for k in self.swept}}
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
            for column in COLUMNS:
                row[column] = group.mean(column)
                if column == "epochs" and row[column] is not None:
                    row[column] = round(row[column])
                if column == "wall_time_s" and row[column] is not None:
                    row[column] = round(row[column], 1)
                if column.startswith("val/"):
                    row[f"{column} std"] = group.std(column)
            for name in self.extra_metrics:
                row[name] = group.mean(name)
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
    settings = {run.path: parse_overrides(run.overrides) if not run.unreadable else {} for run in runs}
    keys = sorted({key for s in settings.values() for key in s})
    swept = [k for k in keys if k != SEED and len({settings[r.path].get(k) for r in runs}) > 1]
    extra = {metric} | {name for name, _ in objectives}

    groups: dict[tuple, Group] = {}
    for run in runs:
        identity = tuple(settings[run.path].get(k) for k in swept)
        group = groups.setdefault(
            identity, Group({k: v for k, v in zip(swept, identity, strict=True) if v is not None})
        )
        group.runs.append(run)
        if not run.completed:
            continue
        losses = [value for _, value in run.scalars.get("val/loss", [])]
        for column in COLUMNS:
            value = min(losses) if column == "val/loss_best" and losses else run.metrics.get(column)
            group.values[column].append(value)
        for name in extra - set(COLUMNS):
            group.values[name].append(run.metrics.get(name))
    if objectives:
        _mark_pareto(list(groups.values()), objectives)
    finished = [run for run in readable if run.completed]
    if chosen is not None and finished and chosen not in COLUMNS:
        present = sorted({name for run in finished for name in run.metrics})
        if chosen not in present:
            raise DigitlabError(
                f"--metric {chosen!r} is not a metric of any run under {str(root)!r}. The runs have: "
                f"{', '.join(present)}."
            )

    def rank_key(group: Group) -> tuple:
        value = group.mean(metric)
        better = value if value is None or _minimized(metric) else -value
        pruned_only = all(run.status == PRUNED for run in group.completed) and bool(group.completed)
        return (value is None, not group.pareto, pruned_only, better if better is not None else 0.0)

    return Comparison(root, metric, swept, sorted(groups.values(), key=rank_key), runs, objectives)


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
    from digitlab.atomic import text_file

    rows = comparison.rows()
    with text_file(path, newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
