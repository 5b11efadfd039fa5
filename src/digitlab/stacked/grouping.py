"""Which jobs of a sweep can share one training loop: the same architecture (but the MLP's width), data
(but its seed and batch size), epochs, loss, optimizer and scheduler classes, trainer and device. They may
differ in `seed` (initial weights and shuffle order), in `model.net.hidden` (each trial in the widest one's
shape, `net.padded`), in `data.batch_size` (each trial steps after its own batch of micro-batches,
`steps.py`, when the batch sizes share the micro-batch `micro_batch_class`) and in the optimizer's and
scheduler's hyperparameters (lr, momentum, weight decay, betas, max_lr, ...): each trial is one param group
with its own scheduler. Anything else runs one job at a time, with the reason in one log line.
"""

from __future__ import annotations

import json
import math
from typing import Any

from omegaconf import DictConfig, OmegaConf

from digitlab.config.hparams import is_plumbing

CLASSIFIER = "digitlab.model.module.ClassifierModule"
# Nets of Flatten, Linear and ReLU layers, which stacked/net.py runs as the same math; resnet18's BatchNorm keeps
# running statistics per call, which a vectorised step would not update as the single run does.
VECTORISABLE_NETS = ("digitlab.model.nets.linear", "digitlab.model.nets.mlp")
# The callbacks every run has (conf/callbacks/default.yaml): the stack writes each trial's equivalents.
STACK_CALLBACKS = {
    "model_checkpoint",
    "last_checkpoint",
    "pictures",
    "checkpoint_on_interrupt",
    "stop_on_nonfinite_loss",
}
# The ModelCheckpoint settings the stack follows per trial (`records.TrialRecords._keep_best`, Lightning's own
# rule): the best `save_top_k` epochs by any monitor and mode, in files named by the trial's own pattern.
CHECKPOINT_SETTINGS = {
    "_target_",
    "dirpath",
    "filename",
    "monitor",
    "mode",
    "auto_insert_metric_name",
    "save_top_k",
}
PATH_SETTINGS = ("dirpath", "run_dir", "output_dir")  # a callback's per-job folder
# Free between stacked trials, besides the optimizer's and scheduler's hyperparameters.
# (model.optimizer and model.scheduler are the model's copies of those groups.)
FREE = (
    "model.net.hidden",  # trials of different widths stack, each in the widest one's shape (`net.padded`)
    "data.batch_size",  # trials of different batch sizes stack, by micro-batches (`micro_batch_class`)
    "seed",
    "data.seed",
    "model.optimizer",
    "model.scheduler",
    "experiment_name",
    "paths",
    "logger",
    "tags",
    "notes",
)


def stack_key(cfg: DictConfig) -> tuple[str | None, str]:
    """`(key, "")` where jobs with equal keys can be stacked, or `(None, why not)`."""
    model = cfg.get("model") or {}
    net = (model.get("net") or {}).get("_target_")
    why = None
    if model.get("_target_") != CLASSIFIER:
        why = f"model {model.get('_target_')} is not trained by gradient descent with a net"
    elif net not in VECTORISABLE_NETS:
        why = f"its net {net} cannot be vectorised exactly (only {', '.join(VECTORISABLE_NETS)})"
    elif cfg.get("lr_find") or cfg.get("ckpt_path"):
        why = "lr_find and ckpt_path run alone"
    elif set(cfg.get("callbacks") or {}) - STACK_CALLBACKS:
        why = f"callbacks {sorted(set(cfg.callbacks) - STACK_CALLBACKS)} run with single jobs only"
    elif why_callbacks := _callback_settings(cfg.get("callbacks") or {}):
        why = why_callbacks
    elif cfg.trainer.get("devices", 1) not in (1, "1") or "ddp" in str(cfg.trainer.get("strategy", "")):
        why = "it trains on more than one device"
    if why:
        return None, why
    container: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)
    shared = {k: v for k, v in _flat(container).items() if not _free(k)}
    shared["optimizer._target_"] = container["optimizer"].get("_target_")
    shared["micro_batch"] = micro_batch_class(int(container["data"]["batch_size"]))
    shared["scheduler._target_"] = (container.get("scheduler") or {}).get("_target_")
    return json.dumps(shared, sort_keys=True, default=str), ""


MICRO_BATCH = 64  # the largest micro-batch a stack of different batch sizes reads


def micro_batch_class(batch_size: int) -> int:
    """The largest power of two up to `MICRO_BATCH` that divides `batch_size`: trials whose batch sizes
    agree on it stack, reading micro-batches of at least that many rows (64, 128, 256 and 512 all give 64;
    96 gives 32 and stacks with 32, 160, ...). Batch sizes with no such common part would have the stack
    read batches of a row or two, slower than running them apart."""
    return math.gcd(batch_size, MICRO_BATCH)


def _callback_settings(callbacks: Any) -> str:
    """Why the stack cannot do what these callback settings ask ("" if it can)."""
    checkpoint = callbacks.get("model_checkpoint") or {}
    extra = sorted(set(checkpoint) - CHECKPOINT_SETTINGS)
    if extra:
        return (
            f"callbacks.model_checkpoint sets {', '.join(extra)} (a stacked trial keeps its best files only)"
        )
    every = (callbacks.get("pictures") or {}).get("every_n_epochs", 0)
    if every:
        return f"callbacks.pictures.every_n_epochs={every} (stacked trials draw their pictures when fit ends)"
    return ""


def _free(key: str) -> bool:
    return (
        key.startswith(("optimizer.", "scheduler."))
        or is_plumbing(key)
        or (key.startswith("callbacks.") and key.rsplit(".", 1)[-1] in PATH_SETTINGS)
        or any(key == f or key.startswith(f"{f}.") for f in FREE)
    )


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out |= _flat(value, f"{prefix}{key}.")
        return out
    return {prefix[:-1]: node}
