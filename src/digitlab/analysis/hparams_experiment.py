"""TensorBoard's HParams tab for a sweep. Without an experiment summary TensorBoard shows every setting that
any run logged (about 24 columns, most of them constant), which pushes the metrics off the screen. When a
sweep ends, its experiment summary is written beside its jobs (`<sweep>/compare/hparams/`): the columns are
the groups' options that differ (`model`), the seed, the values that differ, the experiment (unless it is
only the name of the model in the `model` column), then the final metrics. TensorBoard ticks five hparams until the user ticks more (its
`kNumHParamsToDisplayByDefault`): the first five after sorting those marked `differs` before the rest, each
part by name (`backend_context._sort_and_reduce_to_hparams_limit`). So the first five columns here, and only
they, are marked `differs`: the options and the seed are always in view (two seeds of one setting never
look like duplicate rows), and a sixth swept value is one tick away.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from digitlab.analysis.table import Comparison, differing, run_settings
from digitlab.event_files import add_summary

FOLDER = "hparams"  # under the comparison's folder
METRICS = ("val/acc_best", "val/acc", "val/loss", "train/loss", "train/acc")
SHOWN = 5  # TensorBoard's kNumHParamsToDisplayByDefault


def columns(comparison: Comparison) -> list[str]:
    """The hparams (as the runs log them, `hparams_from_config`) that differ among the compared runs: the
    groups' options, the seed, the values, then the experiment (see above)."""
    runs = [run for run in comparison.runs if not run.unreadable]
    settings = [run_settings(run) for run in runs]
    differ = differing(settings)
    options = [key for key in differ if "." not in key]  # `differing` lists a group's option by its name
    # A run without an experiment is named by its model (`first_set`): beside a `model` column that name says
    # nothing more; without one, it says which model the runs trained.
    named = "model" not in options or any(
        run.setting("experiment_name") != own.get("model") for run, own in zip(runs, settings, strict=True)
    )
    return [
        *options,
        "seed",
        *(key for key in differ if key not in options),
        *(["experiment"] if named else []),
    ]


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
    _mark_shown(experiment, names[:SHOWN])
    folder = out / FOLDER
    for earlier in folder.glob("events.out.tfevents.*"):  # this folder's own, from an earlier summary
        earlier.unlink()
    with SummaryWriter(str(folder)) as writer:
        add_summary(writer, experiment)
    return folder


def _mark_shown(experiment: Any, shown: list[str]) -> None:
    """Mark the `shown` hparams of the experiment summary `differs`, the others not (see above)."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    value = experiment.value[0]
    content = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
    for info in content.experiment.hparam_infos:
        info.differs = info.name in shown
    value.metadata.plugin_data.content = content.SerializeToString()
