"""Resume stopped trials as one stack: their own checkpoints (a single run's layout, full state, whether a
stack or a single run wrote them) are joined (`checkpoint_format.join`) into the checkpoint Lightning
restores a `StackedClassifier` from. Trials stack only when their checkpoints stand at the same step
(`resume_point`), so the loops are shared.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

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
    """Where a checkpoint stands: `epoch/step`. Trials resume in one stack only from the same point."""
    state = read_checkpoint(checkpoint)
    return f"{state['epoch']}/{state['global_step']}"
