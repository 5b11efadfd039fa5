"""Read TensorBoard event files back with tensorboard's own EventAccumulator."""

from __future__ import annotations

from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2


def load(log_dir: Path) -> EventAccumulator:
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def scalars(log_dir: Path) -> dict[str, list[float]]:
    acc = load(log_dir)
    return {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def steps(log_dir: Path) -> dict[str, list[int]]:
    """The step of each logged value, by tag (what TensorBoard's x axis shows)."""
    acc = load(log_dir)
    return {tag: [e.step for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def hparams(log_dir: Path) -> tuple[dict, list[str]]:
    """(hparam name -> value, metric tags) from the HParams plugin's summaries in `log_dir`."""
    contents = load(log_dir).PluginTagToContent("hparams")
    values, metrics = {}, []
    for content in contents.values():
        data = plugin_data_pb2.HParamsPluginData.FromString(content)
        if data.HasField("session_start_info"):
            for key, value in data.session_start_info.hparams.items():
                values[key] = getattr(value, value.WhichOneof("kind"))
        if data.HasField("experiment"):
            metrics = [m.name.tag for m in data.experiment.metric_infos]
    return values, metrics


def experiment(log_dir: Path) -> tuple[list[str], list[str]]:
    """(hparam columns, metric columns) of the HParams experiment summary in `log_dir`, in their order."""
    for content in load(log_dir).PluginTagToContent("hparams").values():
        data = plugin_data_pb2.HParamsPluginData.FromString(content)
        if data.HasField("experiment"):
            return [h.name for h in data.experiment.hparam_infos], [
                m.name.tag for m in data.experiment.metric_infos
            ]
    return [], []
