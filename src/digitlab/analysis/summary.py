"""What a comparison leaves on disk: `compare.md`, `compare.csv`, `val_acc_curves.png` and one
`<metric>_vs_<param>.png` per swept number, in `<dir>/compare/` unless told otherwise."""

from __future__ import annotations

from pathlib import Path

from digitlab.analysis.plots import curves_figure, metric_vs_param_figures
from digitlab.analysis.table import Comparison, compare, markdown, write_csv

FOLDER = "compare"


def write_summary(
    root: str | Path, metric: str | None = None, out: str | Path | None = None
) -> tuple[Comparison, str, list[Path]]:
    """Compare the runs under `root`; write the table and plots to `out` (default `<root>/compare`).
    Returns the comparison, its Markdown table and the files written."""
    comparison = compare(root, metric)
    out = Path(out) if out else Path(root) / FOLDER
    out.mkdir(parents=True, exist_ok=True)
    table = markdown(comparison)
    (out / "compare.md").write_text(table)
    write_csv(comparison, out / "compare.csv")
    figures = {"val_acc_curves.png": curves_figure(comparison)}
    for key, figure in metric_vs_param_figures(comparison).items():
        figures[f"{comparison.metric.replace('/', '_')}_vs_{key.replace('/', '_')}.png"] = figure
    for name, figure in figures.items():
        figure.savefig(out / name, dpi=100)
    return comparison, table, [out / "compare.md", out / "compare.csv", *(out / name for name in figures)]
