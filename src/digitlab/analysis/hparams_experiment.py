"""TensorBoard's HParams tab for a sweep. Without an experiment summary TensorBoard shows every setting that
any run logged (about 24 columns, most of them constant), which pushes the metrics off the screen. When a
sweep ends, its experiment summary is written beside its jobs (`<sweep>/compare/hparams/`): the columns are
the groups' options that differ (`model`), the seed, the values that differ, the experiment, then the final
metrics. TensorBoard shows the first five hparams of an experiment until the user ticks more (its
`kNumHParamsToDisplayByDefault`), those that differ between runs first, so this order keeps the options and
the seed in view: two seeds of one setting never look like duplicate rows.
"""

from __future__ import annotations

from pathlib import Path

from digitlab.analysis.table import Comparison, differing, run_settings
from digitlab.event_files import add_summary

FOLDER = "hparams"  # under the comparison's folder
METRICS = ("val/acc_best", "val/acc", "val/loss", "train/loss", "train/acc")


def columns(comparison: Comparison) -> list[str]:
    """The hparams (as the runs log them, `hparams_from_config`) that differ among the compared runs: the
    groups' options, the seed, the values, then the experiment (see above)."""
    settings = [run_settings(run) for run in comparison.runs if not run.unreadable]
    differ = differing(settings)
    options = [key for key in differ if "." not in key]  # `differing` lists a group's option by its name
    return [*options, "seed", *(key for key in differ if key not in options), "experiment"]


def write_hparams_experiment(comparison: Comparison, out: Path) -> Path:
    """The experiment summary in `out/hparams/` (its own event file, which TensorBoard finds under the sweep
    folder or any folder above it)."""
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams as hparams_summary

    names = columns(comparison)
    example = {}
    for run in comparison.runs:
        if run.unreadable:
            continue
        flat = {"experiment": run.setting("experiment_name"), "seed": run.setting("seed")}
        flat |= run_settings(run)
        for name in names:
            if name not in example and flat.get(name) is not None:
                example[name] = flat[name]
    metrics = {name: 0.0 for name in METRICS}
    # The experiment's column types follow these example values (a string column, a number column).
    experiment, _, _ = hparams_summary({name: example.get(name, "") for name in names}, metrics)
    folder = out / FOLDER
    for earlier in folder.glob("events.out.tfevents.*"):  # this folder's own, from an earlier summary
        earlier.unlink()
    with SummaryWriter(str(folder)) as writer:
        add_summary(writer, experiment)
    return folder
