"""Resume stopped trials as one stack: their own checkpoints (a single run's layout, full state, whether a
stack or a single run wrote them) are joined (`checkpoint_format.join`) into the checkpoint Lightning
restores a `StackedClassifier` from. Trials stack only when their checkpoints stand at the same step
(`resume_point`), so the loops are shared.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from digitlab.checkpoint_format import CONFIG_KEY, TRAINING_PROGRESS
from digitlab.checkpoints import read_checkpoint, resume_checkpoint
from digitlab.rundir import Run


def plan(cfg: DictConfig) -> tuple[str | None, str | None]:
    """A `resume=true` job's `(point, checkpoint)`: where its stack resumes from (`resume_point`, or "fresh"
    for a run with no checkpoint) and the checkpoint; `(None, None)` for a complete run (it is skipped)."""
    run = Run(cfg.paths.output_dir)
    if run.completed:
        return None, None
    checkpoint = resume_checkpoint(run.path)
    return (resume_point(checkpoint) if checkpoint else "fresh"), checkpoint


def resume_point(checkpoint: str | Path) -> str:
    """Where a checkpoint stands: `epoch/end`, or `epoch/<training rows into it>` (trials of different batch
    sizes count different steps at the same point). Trials resume in one stack only from the same point."""
    state = read_checkpoint(checkpoint)
    progress = state["loops"]["fit_loop"][TRAINING_PROGRESS]
    if progress.get("is_last_batch"):
        return f"{state['epoch']}/end"
    batch_size = (state.get(CONFIG_KEY) or {}).get("data", {}).get("batch_size", 1)
    return f"{state['epoch']}/{progress['current']['completed'] * batch_size}"
