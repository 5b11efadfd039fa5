"""A faster process exit for the command-line tools.

After torch and Lightning are loaded, the interpreter's shutdown spends over a second in the garbage
collector, walking millions of objects (torch, sympy, Lightning, torchmetrics) that the OS frees at exit
anyway: 1.4 s of a 7 s training run on a 2-core machine. `gc.freeze()` as the last exit handler moves them
out of the collector's reach. Every other exit handler (logging's flush and close, TensorBoard's writers)
still runs first, and objects are still released by reference counting; only the final cycle hunt is skipped.
"""

from __future__ import annotations

import atexit
import gc

_registered = False


def skip_exit_gc() -> None:
    """Call first thing in a CLI's entry point (and in each job of a parallel launcher's worker processes):
    exit handlers registered later, such as Lightning's, run before this one. Registers once per process."""
    global _registered
    if not _registered:
        atexit.register(gc.freeze)
        _registered = True
