"""The process policy: settings that touch the whole Python process (warnings, log handlers, the exit), in
one place. Entry points apply it explicitly (`apply_process_policy`): importing any digitlab module changes
none of it, so a notebook keeps its own warnings, log handlers and matplotlib backend.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import logging
import os
import sys
import warnings
from collections.abc import Iterator

from digitlab.errors import DigitlabError

# (message regex, module regex of the code that warns): each filter is scoped to the module raising it.
QUIET_WARNINGS = (
    # Our batches are slices of in-memory tensors: DataLoader workers would only add inter-process copies.
    (".*does not have many workers.*", r"lightning\.pytorch\..*"),
    # Metrics are logged per epoch, so Lightning's per-step logging interval does not apply.
    (".*smaller than the logging interval.*", r"lightning\.pytorch\..*"),
    # The pixel-similarity baseline has nothing to optimize, by design.
    (
        ".*configure_optimizers. returned .None., this fit will run with no optimizer.*",
        r"lightning\.pytorch\..*",
    ),
    # A stacked trial's scheduler is built on the trial's own optimizer, which only holds its param group
    # while the shared one steps (stacked/module.py); PyTorch's order check cannot see that step.
    (r".*`lr_scheduler.step\(\)` before `optimizer.step\(\)`.*", r"digitlab\.stacked\.module"),
    # On a machine with SLURM's tools, Lightning suggests `srun python ...` for every run; digitlab's SLURM
    # launcher (hydra/launcher=slurm) already runs each job under srun, and a local run is meant to be local.
    (".*The `srun` command is available on your system but is not used.*", r"lightning\..*"),
    # resume=true continues in the run's own checkpoints/ folder, which of course holds its checkpoints; a new
    # run is never started in a folder that holds one (`config.checks.check_holds_no_run`).
    (".*Checkpoint directory .* exists and is not empty.*", r"lightning\..*"),
    # Lightning's own use of a torch API deprecated in torch 2.10+ (LeafSpec); nothing for a user to change.
    (".*isinstance.treespec, LeafSpec.*", r"lightning\..*"),
)

_exit_gc_skipped = False


def apply_process_policy() -> None:
    """What every entry point applies once it runs (idempotent): quiet warnings, one log stream, a fast exit."""
    for message, module in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message, module=module)
    one_log_stream()
    # TensorBoard's event reader (digitlab-compare, the sweep summary) logs every file it opens at INFO.
    logging.getLogger("tensorboard").setLevel(logging.WARNING)
    fast_event_checksums()
    skip_exit_gc()


def fast_event_checksums() -> None:
    """TensorBoard's event writer, without TensorFlow, checksums every record with a pure-Python CRC32C: about
    9 ms for one picture, 4 of the 13 s a stack of 256 trials spent writing its pictures (upstream:
    tensorflow/tensorboard#4023). The `crc32c` package computes the same checksum in C; the event writer and
    reader get it in place of their own."""
    import crc32c
    from tensorboard.compat.tensorflow_stub import pywrap_tensorflow
    from tensorboard.summary.writer import record_writer

    def masked_crc32c(data: bytes) -> int:
        # TFRecord's masking of a CRC32C, as tensorboard.compat.tensorflow_stub.pywrap_tensorflow does it.
        x = crc32c.crc32c(data)
        return (((x >> 15) | (x << 17)) + 0xA282EAD8) & 0xFFFFFFFF

    record_writer.masked_crc32c = pywrap_tensorflow.masked_crc32c = masked_crc32c


class _DropAdverts(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


def one_log_stream() -> None:
    """Lightning gives its loggers console handlers of their own when it is imported before the root logger
    has any; once the root logger has handlers (Hydra's console and <run>/train.log), each message would show
    twice or skip train.log (hydra-ecosystem/hydra#2898). Then Lightning's loggers keep no handler of their
    own and pass every message to the root's, as Lightning itself does when imported after them. Lightning's
    advert for its hosted logger is dropped."""
    if logging.getLogger().hasHandlers() and "lightning" in sys.modules:
        for name in LIGHTNING_LOGGERS:
            logger = logging.getLogger(name)
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
            logger.propagate = True
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropAdverts) for f in rank_zero.filters):
        rank_zero.addFilter(_DropAdverts())


LIGHTNING_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric")


def skip_exit_gc() -> None:
    """A faster exit. After torch and Lightning are loaded, the interpreter's shutdown spends over a second in
    the garbage collector walking millions of objects that the OS frees anyway (1.4 s of a 7 s training run
    on 2 cores). `gc.freeze()` as the last exit handler moves them out of its reach; every other exit handler
    (logging's flush, TensorBoard's writers) registered later still runs first. Registered once a process."""
    global _exit_gc_skipped
    if not _exit_gc_skipped:
        atexit.register(gc.freeze)
        _exit_gc_skipped = True


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Lightning's info lines ("GPU available: ...", "Restoring states from ...") held back while the block
    runs: for a Trainer built only to check its settings, and for the lr finder's short fit."""
    import lightning.pytorch  # noqa: F401 (its import sets its loggers' levels: first, then quieted)

    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


@contextlib.contextmanager
def exit_on_error(program: str) -> Iterator[None]:
    """A DigitlabError inside becomes one paragraph on stderr and exit code 1 (the traceback only with
    HYDRA_FULL_ERROR=1)."""
    try:
        yield
    except DigitlabError as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"{program}: {err}", file=sys.stderr)
        sys.exit(1)
