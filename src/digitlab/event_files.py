"""TensorBoard event files written in bulk, for a stack of K trials each with its own TensorBoard run.

tensorboard's `EventFileWriter` (under Lightning's `TensorBoardLogger`, through torch's `SummaryWriter`) runs
one writer thread per run and opens, appends to and closes its file once per record: K trials logging ten
scalars an epoch are K threads fighting the training step for the GIL and 10 K file opens an epoch (at
K = 256 the writer threads took more of the fit than the math). `buffer_event_file` swaps a logger's writer
for a `BufferedEventFile`: the same file, the same records (tensorboard's own `RecordWriter` frames them),
kept in memory and appended in one write when the stack flushes, once an epoch, in the training thread.
Each trial still has its own event file, read by TensorBoard as any run's.
"""

from __future__ import annotations

import io
import logging
from typing import Any

log = logging.getLogger(__name__)


class BufferedEventFile:
    """Stands in for tensorboard's `EventFileWriter` (`add_event`, `flush`, `close`, `get_logdir`)."""

    def __init__(self, file_name: str, logdir: str) -> None:
        from tensorboard.summary.writer.record_writer import RecordWriter

        self.file_name, self._logdir = file_name, logdir
        self._pending = io.BytesIO()
        self._records = RecordWriter(self._pending)

    def get_logdir(self) -> str:
        return self._logdir

    def add_event(self, event: Any) -> None:
        self._records.write(event.SerializeToString())

    def flush(self) -> None:
        data = self._pending.getvalue()
        if data:
            with open(self.file_name, "ab") as file:  # appended whole: a reader never sees half a record
                file.write(data)
            self._pending.seek(0)
            self._pending.truncate()

    def close(self) -> None:
        self.flush()


def buffer_event_file(logger: Any) -> BufferedEventFile | None:
    """`logger`'s event file written through a `BufferedEventFile` from now on (None: not a TensorBoard
    logger on tensorboard's own writer, left as it is). Its writer thread is stopped; the file it made,
    with its header record, is the one appended to."""
    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    if not isinstance(logger, TensorBoardLogger):
        return None
    from digitlab.compat.tensorboard import event_file_name

    file_writer = logger.experiment.file_writer  # None once closed
    writer = getattr(file_writer, "event_writer", None)
    if not isinstance(writer, EventFileWriter):
        return None
    writer.close()  # its header written, its thread stopped
    file_writer.event_writer = BufferedEventFile(event_file_name(writer), writer.get_logdir())
    return file_writer.event_writer


def add_summary(writer: Any, summary: Any, step: int | None = None) -> None:
    """A `Summary` built once (a PNG encoded for the file and TensorBoard alike, an hparams session) into
    the event file of `writer`, a torch `SummaryWriter`, which has no `add_*` method for a built one."""
    if writer.file_writer is None:
        raise ValueError(f"the TensorBoard writer of {writer.log_dir} was closed")
    writer.file_writer.add_summary(summary, global_step=step)


def add_scalars(writer: Any, values: dict[str, float], step: int) -> None:
    """`values` at `step` in one event of `writer` (a torch `SummaryWriter`): the records its `add_scalar`
    writes one by one, as one `Summary` holding them all, framed and checksummed once (a stack of 256 trials
    logs about 5,000 scalars an epoch)."""
    from tensorboard.compat.proto.summary_pb2 import Summary

    summary = Summary(value=[Summary.Value(tag=tag, simple_value=float(v)) for tag, v in values.items()])
    add_summary(writer, summary, step)


def flush_all(files: list[BufferedEventFile]) -> None:
    for file in files:
        file.flush()
