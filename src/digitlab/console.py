"""What a sweep prints. A single run shows everything (its progress bar, the model summary, Lightning's
notes, the final metrics). A sweep shows one line per job as it ends (its overrides, the metric it is ranked
by, epochs and time) and the comparison at the end: each job's console shows warnings and errors only, and
its `train.log` keeps every line; the model summary is printed by the sweep's first job only; progress bars
are off. `digitlab-train -v ...` (or `hydra.verbose=true`, or `DIGITLAB_VERBOSE=1`) brings back every job's
full output.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

VERBOSE = "DIGITLAB_VERBOSE"  # set by `-v`; the environment carries it to joblib workers and SLURM jobs
VERBOSE_FLAGS = ("-v", "--verbose")


def take_verbose_flag(argv: list[str]) -> list[str]:
    """`argv` without `-v`/`--verbose` (Hydra does not know them); seen, they set `DIGITLAB_VERBOSE=1`."""
    if any(arg in VERBOSE_FLAGS for arg in argv):
        os.environ[VERBOSE] = "1"
    return [arg for arg in argv if arg not in VERBOSE_FLAGS]


def verbose(hydra_verbose: Any = False) -> bool:
    return os.environ.get(VERBOSE) == "1" or bool(hydra_verbose)


SAY = "digitlab.say"  # the logger of lines a quiet console still shows (`say`)


class _Quiet(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.name == SAY


def say(message: str, *args: Any) -> None:
    """A line every console shows, quiet or not (and the job's train.log keeps): what a sweep's user acts on."""
    logging.getLogger(SAY).info(message, *args)


def quiet_console() -> None:
    """The console handlers of the root logger (Hydra's) show warnings, errors and `say` lines only; file
    handlers (the job's train.log) keep every line."""
    for handler in logging.getLogger().handlers:
        console = isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)
        if console and not any(isinstance(f, _Quiet) for f in handler.filters):
            handler.addFilter(_Quiet())


def quiet_launchers() -> None:
    """Hydra's launchers log each job's overrides as it starts; in a quiet sweep the job's end line says them."""
    from digitlab.compat.hydra import LAUNCHER_LOGGERS

    for name in LAUNCHER_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def shown_value(value: Any) -> str:
    """A number as a person reads it: 4 significant digits (0.443, 1e-05, 128); anything else as it is. The
    one rule for the console's lines and the comparison's tables and plots."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def job_line(
    idx: int | None, overrides: Sequence[str], metrics: dict[str, Any] | None, metric: Any, error: Any = None
) -> str:
    """`#3  model=mlp optimizer.lr=0.1 seed=1  val/acc_best 0.9912  4 epochs  12.3 s`, or the job's failure."""
    from digitlab.config.hparams import is_plumbing

    shown = [o for o in overrides if not is_plumbing(o.lstrip("+~").split("=", 1)[0])]
    head = (f"#{idx}  " if idx is not None else "") + " ".join(_short(o) for o in shown)
    if error is not None:
        said = str(error).splitlines()[0] if str(error) else type(error).__name__
        return f"{head}  {'pruned' if type(error).__name__ == 'TrialPruned' else 'FAILED'}: {said}"
    metrics = metrics or {}
    names = metric if isinstance(metric, list) else [metric or "val/acc_best"]
    values = "  ".join(
        f"{name} {metrics[name]:.4f}" for name in names if isinstance(metrics.get(name), float)
    )
    status = metrics.get("status", "completed")
    tail = f"  {metrics['epochs']} epochs" if "epochs" in metrics else ""
    tail += f"  {metrics['wall_time_s']:.1f} s" if "wall_time_s" in metrics else ""
    return f"{head}  {values}{tail}" + ("" if status == "completed" else f"  [{status}]")


def job_numbers(numbers: Sequence[int]) -> str:
    """`#0-63,80,96-99`: job numbers as runs of consecutive ones (a stack of 256 names them in one line)."""
    runs: list[list[int]] = []
    for n in sorted(numbers):
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return "#" + ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def _short(override: str) -> str:
    """`optimizer.lr=0.44303752452182665` -> `optimizer.lr=0.443` (a number at 4 significant digits)."""
    key, sep, value = override.partition("=")
    try:
        number = float(value)
    except ValueError:
        return override
    return f"{key}{sep}{shown_value(number)}" if "." in value or "e" in value.lower() else override
