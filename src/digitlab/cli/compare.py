"""Rank the runs under a run, sweep or logs folder, grouped by what really differs between them.

Runs whose resolved configs are equal but for the seed are one row (mean ± std over seeds, n); the columns
are the settings that differ among the compared runs (a group's option, e.g. model, and each value that
differs beyond it, e.g. optimizer.lr). A loss is ranked within each loss function, never across them.

Output: the ranked table on stdout, and in <dir>/compare/ (or --out):
  compare.md, compare.csv       the table (the CSV with each metric's std in its own column)
  val_acc_curves.png            val/acc per epoch, one line per row (mean, ±1 std band)
  <metric>_vs_<setting>.png     the ranked metric against each swept number, one line per setting of the rest
Exit code: 0 when compared, 1 for a folder or option it refuses, 2 for a command line it cannot read.

Examples:
  digitlab-compare logs/multiruns/2026-12-03_10-00-00-000000
  digitlab-compare logs/ --metric val/loss --out ~/paper/figures
  digitlab-compare --study logs/multiruns/<search>      every trial of an Optuna study, with host and folder
"""

from __future__ import annotations

import argparse
import sys

from digitlab.errors import DigitlabError
from digitlab.process import apply_process_policy


def main(argv: list[str] | None = None) -> int:
    from digitlab.analysis.summary import write_summary

    if argv is None:  # run as the command, not called from Python
        apply_process_policy()
    parser = argparse.ArgumentParser(
        prog="digitlab-compare", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dir", nargs="?", help="a run dir, a sweep dir (logs/multiruns/...) or logs/")
    parser.add_argument(
        "--study",
        default=None,
        help="list every trial of an Optuna study instead: a storage URL (postgresql://...) or a study folder",
    )
    parser.add_argument(
        "--study-name", default=None, help="which study of that storage (if it holds several)"
    )
    parser.add_argument(
        "--metric", default=None, help="rank by this metric (default: the runs' optimized_metric)"
    )
    parser.add_argument(
        "--out", default=None, help="where to write the table and plots (default: <dir>/compare)"
    )
    args = parser.parse_args(argv)
    if args.study:
        if args.out or args.metric:
            parser.error(
                "--study lists the study's trials on stdout: --out and --metric apply to a folder of runs"
            )
        return list_trials(args.study, args.study_name)
    if not args.dir:
        parser.error("a folder of runs to compare, or --study <storage>, is needed")
    try:
        comparison, table, written = write_summary(args.dir, args.metric, args.out)
    except DigitlabError as err:
        print(f"digitlab-compare: {err}", file=sys.stderr)
        return 1  # 2 is argparse's, for a command line it cannot parse
    incomplete = [r for r in comparison.runs if not r.completed]
    print(
        f"{len(comparison.runs)} runs under {args.dir}, ranked by {comparison.metric}"
        + (f" ({len(incomplete)} incomplete or failed)" if incomplete else "")
        + ":\n"
    )
    print(table)
    from digitlab.analysis.table import ranking_note

    note = ranking_note(comparison)
    if note:
        print(note)
    for run in comparison.runs:
        if run.unreadable:
            print(f"unreadable: {run.path} ({run.unreadable})")
    if written:
        print(f"Written to {written[0].parent}: {', '.join(p.name for p in written)}")
    else:
        print(f"Not written: {args.dir} is read-only; pass --out <folder> for the table and plots.")
    return 0


def list_trials(where: str, name: str | None) -> int:
    """Every trial of the study, with the host and run folder of each (workers on several machines)."""
    from digitlab.analysis.trials import markdown_rows, trial_rows
    from digitlab.sweeps.database import mask

    try:
        study_name, rows = trial_rows(where, name)
    except DigitlabError as err:
        print(f"digitlab-compare: {err}", file=sys.stderr)
        return 1
    print(f"{len(rows)} trials of study {study_name!r} in {mask(where) if '://' in where else where}:\n")
    print(markdown_rows(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
