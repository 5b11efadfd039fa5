"""Resume stopped trials as one stack: their own checkpoints (a single run's layout, full state, whether a
stack or a single run wrote them) are joined (`checkpoint_format.join`) into the checkpoint Lightning
restores a `StackedClassifier` from. Trials stack only when their checkpoints stand at the same step
(`resume_point`), so the loops are shared.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from digitlab.checkpoint_format import CONFIG_KEY, TRAINING_PROGRESS
from digitlab.checkpoints import newest_intact, read_checkpoint, resume_checkpoint
from digitlab.rundir import INTERRUPTED_CHECKPOINT, Run


def plan(cfg: DictConfig) -> tuple[str | None, str | None]:
    """A `resume=true` job's `(point, checkpoint)`: where its stack resumes from (`resume_point`, or "fresh"
    for a run with no checkpoint) and the checkpoint; `(None, None)` for a complete run (it is skipped)."""
    run = Run(cfg.paths.output_dir)
    if run.completed:
        return None, None
    checkpoint = resume_checkpoint(run.path)
    return (resume_point(checkpoint) if checkpoint else "fresh"), checkpoint


def at_an_epoch_end(cfg: DictConfig) -> tuple[str, str] | None:
    """For a slot of a continuous stack, which takes trials between epochs: `(point, checkpoint)` of the
    newest intact checkpoint of the job's run that stands at an epoch's end (`interrupted.ckpt` passed over:
    a signal may have stopped the fit within an epoch); None without one."""
    path = newest_intact(Run(cfg.paths.output_dir).checkpoints, passing_over={INTERRUPTED_CHECKPOINT})
    if path is None:
        return None
    point = resume_point(path)
    return (point, str(path)) if point.endswith("/end") else None


def resume_point(checkpoint: str | Path) -> str:
    """Where a checkpoint stands: `epoch/end`, or `epoch/<training rows into it>` (trials of different batch
    sizes count different steps at the same point). Trials resume in one stack only from the same point."""
    state = read_checkpoint(checkpoint)
    progress = state["loops"]["fit_loop"][TRAINING_PROGRESS]
    if progress.get("is_last_batch"):
        return f"{state['epoch']}/end"
    batch_size = (state.get(CONFIG_KEY) or {}).get("data", {}).get("batch_size", 1)
    return f"{state['epoch']}/{progress['current']['completed'] * batch_size}"
