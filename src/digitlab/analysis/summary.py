"""What a comparison leaves on disk: `compare.md`, `compare.csv`, `val_acc_curves.png`, one
`<metric>_vs_<param>.png` per swept number and, when two or more settings were swept, the sweep view:
`parallel_coordinates.png` and `importance.png` (`sweep_view.py`); in `<dir>/compare/` unless told otherwise.

The folder's `.digitlab-compare.json` lists the files a comparison wrote there. A file of the same name that
it does not list (the user's own `compare.md` in `--out ~/paper`) is never replaced: the comparison is
refused before anything is written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import digitlab.atomic as atomic
from digitlab.analysis.plots import curves_figure, metric_vs_param_figures
from digitlab.analysis.sweep_view import importance_figure, importance_views, parallel_coordinates_figures
from digitlab.analysis.table import Comparison, compare, markdown, write_csv
from digitlab.errors import ConfigError

FOLDER = "compare"
MANIFEST = ".digitlab-compare.json"


def write_summary(
    root: str | Path, metric: str | None = None, out: str | Path | None = None
) -> tuple[Comparison, str, list[Path]]:
    """Compare the runs under `root`; write the table and plots to `out` (default `<root>/compare`).
    Returns the comparison, its Markdown table and the files written: none when `out` was not given and
    `<root>` is read-only (a colleague's results, an archive): comparing only reads. A given `out` that
    cannot be written is a ConfigError."""
    comparison = compare(root, metric)
    given = out is not None
    out = Path(out) if out else Path(root) / FOLDER
    table = markdown(comparison)
    if not _writable(out):
        if given:
            raise ConfigError(
                f"--out {str(out)!r} cannot be written (read-only or not a folder): name another."
            )
        return comparison, table, []
    figures = {"val_acc_curves.png": curves_figure(comparison)}
    for key, figure in metric_vs_param_figures(comparison).items():
        figures[f"{comparison.metric.replace('/', '_')}_vs_{key.replace('/', '_')}.png"] = figure
    parallel = parallel_coordinates_figures(comparison)
    for block, figure in parallel.items():
        name = (
            "parallel_coordinates.png"
            if len(parallel) == 1
            else f"parallel_coordinates_{_file_part(block)}.png"
        )
        figures[name] = figure
    views = importance_views(comparison)
    for view in views:
        name = "importance.png" if len(views) == 1 else f"importance_{_file_part(view.block)}.png"
        figures[name] = importance_figure(comparison, view)
        table += f"\nImportance for {comparison.metric}: {view.said}\n"
    names = ["compare.md", "compare.csv", *figures]
    earlier = check_owned(out, names)
    atomic.write_text(out / "compare.md", table)
    write_csv(comparison, out / "compare.csv")
    for name, figure in figures.items():
        atomic.save_figure(figure, out / name, dpi=100)
    atomic.write_json(out / MANIFEST, {"files": sorted(set(earlier) | set(names))})
    return comparison, table, [out / name for name in names]


def _file_part(text: str) -> str:
    """`loss=bce` -> `loss-bce`: a setting as part of a file name."""
    return "".join(c if c.isalnum() or c in "._" else "-" for c in text)


def _writable(folder: Path) -> bool:
    """Whether `folder` can take the comparison's files (made if missing; nothing else is written)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return folder.is_dir() and os.access(folder, os.W_OK)


def check_owned(out: Path, names: list[str]) -> list[str]:
    """The files an earlier comparison wrote to `out`; ConfigError if any of `names` is there but is not one."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {str(out)!r} is a file: name a folder for the table and plots.")
    try:
        earlier = json.loads((out / MANIFEST).read_text())["files"] if (out / MANIFEST).exists() else []
    except (ValueError, KeyError, TypeError, OSError):
        earlier = []  # a damaged manifest claims nothing: every existing file is then the user's
    foreign = [name for name in names if (out / name).exists() and name not in earlier]
    if foreign:
        raise ConfigError(
            f"--out {str(out)!r} already holds {', '.join(foreign)}, which digitlab-compare did not write "
            f"there (it lists what it wrote in {MANIFEST}): they would be replaced. Choose another --out "
            "folder, or move those files away."
        )
    return list(earlier)
