"""usage: digitlab-eval ckpt_path=<checkpoint> [key=value ...]

Validation metrics from a checkpoint alone. The checkpoint carries its run's config, so the same data and
model are rebuilt and validated; the printed metrics match the run's own.

  ckpt_path=<file>   a checkpoint of a digitlab run, e.g. logs/runs/<run>/checkpoints/last.ckpt or the best
                     epoch's epochNNN-acc0.9xxx.ckpt (read as data only: see README, "What a run leaves behind")
  key=value          adjusts the stored config, e.g. data.root=<a copy of the data elsewhere>,
                     trainer.accelerator=gpu, data.eval_batch_size=1024; the model's own settings must stay
                     those the checkpoint was trained with

Output (stdout): one JSON object, metric name -> value, sorted by name, e.g.
  {"val/acc": 0.9735, "val/acc_3": 0.9712, "val/acc_7": 0.9757, "val/acc_macro": 0.9735, "val/loss": 0.0309}
Exit code: 0 when evaluated, 1 for a checkpoint or setting it refuses (one paragraph on stderr), 2 for a
command line it cannot read.

Example:
  digitlab-eval ckpt_path=logs/runs/2026-12-03_10-00-00-000000_fastbook_mlp/checkpoints/last.ckpt
"""

from __future__ import annotations

import json
import sys
from typing import Any

from digitlab.cli.arguments import parse_args, wants_help
from digitlab.errors import DigitlabError
from digitlab.process import apply_process_policy


def evaluate(ckpt_path: str, overrides: list[str] = ()) -> dict[str, float]:
    import lightning as L

    from digitlab.build import build_from_checkpoint
    from digitlab.config.checks import validate

    cfg, datamodule, model = build_from_checkpoint(ckpt_path, overrides, check=validate)
    trainer = L.Trainer(
        accelerator=cfg.trainer.accelerator,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    (metrics,) = trainer.validate(model, datamodule=datamodule, verbose=False)
    return {key: float(value) for key, value in sorted(metrics.items())}


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # run as the command, not called from Python
        apply_process_policy()
    argv = sys.argv[1:] if argv is None else argv
    if wants_help(argv):
        print(__doc__)
        return 0
    settings, positional = parse_args(argv)
    if positional or "ckpt_path" not in settings:
        print(f"{__doc__.splitlines()[0]}\n(digitlab-eval --help says more)", file=sys.stderr)
        return 2
    ckpt_path = settings.pop("ckpt_path")
    try:
        metrics: dict[str, Any] = evaluate(ckpt_path, [f"{k}={v}" for k, v in settings.items()])
    except DigitlabError as err:
        print(f"digitlab-eval: {err}", file=sys.stderr)
        return 1
    print(json.dumps(metrics, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
