"""digitlab: fastbook chapter 4 (MNIST 3s vs 7s) as a Lightning + Hydra experiment framework.

Importing the package is cheap: torch, Lightning and Hydra load only in the modules that need them.
"""

__version__ = "0.1.0"


def run(overrides=(), output_dir=None):
    """Train one experiment from Python: `metrics, run_dir = digitlab.run(["experiment=fastbook_mlp"])`.

    The same composed config and run dir as `digitlab-train`; see `digitlab.api`.
    """
    from digitlab.api import run as api_run

    return api_run(overrides, output_dir)
