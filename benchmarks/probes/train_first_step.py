"""`python train_first_step.py <digitlab-train overrides>`: digitlab-train with this folder on sys.path, so
the command line can add `+callbacks.first_step={_target_:first_step.FirstStepTimer,path:...}`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from digitlab.cli.train import cli

sys.argv[0] = "digitlab-train"
cli()
