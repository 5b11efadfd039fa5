"""submitit (bounded to 1.5.x): requeueing the running SLURM job from inside it.

`requeue`: submitit requeues a job (`scontrol requeue`, counting the requeues left) only from its own signal
handler, at once. digitlab's SLURM launcher first lets the fit stop at a batch boundary and write its
checkpoint, then asks for the same requeue, through the method that handler calls.
Upstream: none filed that this project found.
"""

from __future__ import annotations


def requeue(left: int) -> None:
    """Requeue the SLURM job this process runs in, with `left` requeues still allowed after this one."""
    import submitit

    submitit.JobEnvironment()._requeue(left)
