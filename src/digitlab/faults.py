"""Pause points for fault-injection tests. With `DIGITLAB_PAUSE_AT=<point>` and `DIGITLAB_PAUSE_MARKER=<file>`
in its environment, a process that reaches `<point>` writes the point's name into the marker file and waits
there while the file exists, so that a test can kill it (SIGKILL, SIGTERM) or break its disk at exactly that
point instead of after a guessed sleep, and let it go on by deleting the marker. A point pauses once: when
it is let go, `<marker>.passed` is written, and a later process with the same environment (a SLURM job
requeued with it) passes the point. Without them, `pause_point` is one dictionary lookup.

The points: `epoch_end:<epoch>` (that epoch's last.ckpt written), `mid_epoch:<epoch>` (half of that epoch's
training batches done), `mid_validation:<epoch>` (that epoch trained, its first validation batch
done), `before_metrics` (the last checkpoint written, metrics.json not yet) and
`checkpoint_write:<file name>@<epoch>` (the checkpoint's bytes are on disk under a temporary name, not yet
renamed into place), `checkpoint_link:<file name>@<epoch>` (a stack's checkpoint, written, is about to take
that name in the next trial's folder: the trials before it have it, the others not yet), `trial_files_held`
(a stack's end: its trials' pictures and own checkpoints written under temporary names, none renamed into
place yet, `atomic.together`), `trial_asked` (a search worker asked its trial, which is RUNNING in the
study, and has not beaten for it yet), `trial_ended` (a search's job returned, its run finished or not, and
the study is not told its outcome yet).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

PAUSE_AT = "DIGITLAB_PAUSE_AT"
PAUSE_MARKER = "DIGITLAB_PAUSE_MARKER"


def pause_point(name: str) -> None:
    if os.environ.get(PAUSE_AT) != name:
        return
    marker = Path(os.environ[PAUSE_MARKER])
    passed = marker.with_name(marker.name + ".passed")
    if passed.exists():
        return
    marker.write_text(name)
    while marker.exists():
        time.sleep(0.02)
    passed.touch()
