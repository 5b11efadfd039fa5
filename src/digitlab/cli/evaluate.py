"""Validation metrics from a checkpoint alone: `digitlab-eval ckpt_path=<file> [key=value ...]`.

The checkpoint carries its run's config, so the same data and model are rebuilt and validated; the printed
metrics match the run's own. Extra `key=value` pairs adjust the stored config (e.g. `data.root=...`,
`trainer.accelerator=gpu`).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from digitlab.cli.arguments import parse_args
from digitlab.errors import DigitlabError
from digitlab.process import apply_process_policy


def evaluate(ckpt_path: str, overrides: list[str] = ()) -> dict[str, float]:
    import lightning as L

    from digitlab.checkpoints import build_from_checkpoint
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
    settings, positional = parse_args(sys.argv[1:] if argv is None else argv)
    if positional or "ckpt_path" not in settings:
        print("usage: digitlab-eval ckpt_path=<checkpoint> [key=value ...]", file=sys.stderr)
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
