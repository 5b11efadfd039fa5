"""Checkpoints: how they are written (atomically, through Lightning's own `CheckpointIO` extension point),
found again (the newest intact one, for `resume=true`) and read (a checkpoint alone is enough to rebuild its
run: it carries the composed config, see `record.py`).

A checkpoint is a pickle, and a pickle can name any function to call while it is read. Every checkpoint
digitlab opens, its own readers' and Lightning's (`fit(ckpt_path=...)` reads through `CheckpointFiles`), is
read by `read_checkpoint` with PyTorch's restricted unpickler (`weights_only=True`): tensors and plain
containers of plain values, which is all a digitlab or Lightning checkpoint holds. Anything else is refused
before it is built.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import warnings
from collections.abc import Collection
from pathlib import Path
from typing import Any

from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from omegaconf import DictConfig, OmegaConf

import digitlab.checkpoint_format as checkpoint_format
from digitlab.atomic import WriteFailed, temporary_path, write_atomically
from digitlab.checkpoint_format import CONFIG_KEY
from digitlab.errors import ConfigError
from digitlab.faults import pause_point
from digitlab.rundir import Run

log = logging.getLogger(__name__)


def save_checkpoint(checkpoint: dict[str, Any], path: str | Path) -> None:
    """`torch.save` into a temporary file beside `path`, renamed into place once it is all on disk. It is
    serialized in memory first: torch's zip writer reports a failed disk write as a RuntimeError without
    the OS's reason, a plain file write reports it as the OSError it is."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)

    def write(file: Any) -> None:
        file.write(buffer.getbuffer())
        file.flush()
        pause_point(f"checkpoint_write:{Path(path).name}@{checkpoint.get('epoch')}")

    write_atomically(path, write)


class CheckpointFiles(TorchCheckpointIO):
    """The trainer's checkpoint IO. Every checkpoint Lightning writes for a run (ModelCheckpoint's,
    last.ckpt, interrupted.ckpt) goes through `save_checkpoint`: a full disk or a read-only folder leaves the
    previous checkpoint, never a truncated one. Every checkpoint it reads (`fit(ckpt_path=...)`) goes through
    `read_checkpoint`, as data, whatever `weights_only` Lightning was given."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        save_checkpoint(checkpoint, path)

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> Any:
        return read_checkpoint(path, map_location=map_location or "cpu")


class ForeignObjects(ConfigError):
    """A file that holds objects digitlab does not load: reading it would call code named inside it."""

    def __init__(self, path: str | Path, names: str) -> None:
        self.path, self.names = str(path), names
        super().__init__(f"{path} {self.refusal()}")

    def refusal(self) -> str:
        return (
            f"holds objects digitlab does not load ({self.names}). A checkpoint is read as data only "
            "(tensors and plain values: torch.load with weights_only=True), so a file that would run code when "
            "opened is refused, not opened. Use a checkpoint written by digitlab-train; if this one is yours, "
            "train it again with this version."
        )


# How PyTorch's restricted unpickler names the global it refused ("Unsupported global: GLOBAL posix.system
# ...", "... GLOBAL __main__.X was not an allowed global by default ...").
_REFUSED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


class NotThisRunsCheckpoint(ConfigError):
    """A stack's checkpoint opened from a folder that is none of its trials' run folders."""

    def __init__(self, path: str | Path, runs: list[str]) -> None:
        self.path, self.runs = Path(path), runs
        super().__init__(f"{path} {self.refusal()}")

    def refusal(self) -> str:
        return (
            f"is the checkpoint of a stack of {len(self.runs)} trials ({self.runs[0]} ... {self.runs[-1]}), "
            f"shared by their run folders, and {self.path.parent.parent.name} is none of them: open it from a "
            "trial's own folder (<sweep>/<trial>/checkpoints/), or keep a copied trial folder's name."
        )


def read_stored(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """The file at `path` as stored, read as data (`weights_only=True`); `ForeignObjects` when it holds
    anything else. A damaged file raises what torch raises for it."""
    import pickle

    import torch

    try:
        with warnings.catch_warnings():
            # A plain pickle (not torch.save's zip) makes torch warn about its protocol before refusing it.
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        refused = sorted(set(_REFUSED_GLOBAL.findall(str(err))))
        if refused:
            raise ForeignObjects(path, ", ".join(refused)) from None
        raise


def read_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """The run's checkpoint at `path` (`read_stored`). A stack's checkpoint, linked into each of its trials'
    folders (`checkpoint_format`), reads as the checkpoint of the trial whose folder it was opened from."""
    checkpoint = read_stored(path, map_location)
    if not checkpoint_format.is_stack(checkpoint):
        return checkpoint
    slot = checkpoint_format.slot_of(checkpoint, Path(path).parent.parent.name)
    if slot is None:
        raise NotThisRunsCheckpoint(path, checkpoint[checkpoint_format.STACK_KEY]["runs"])
    return checkpoint_format.split(checkpoint, slot)


def link_checkpoint(source: Path, target: Path, epoch: int) -> None:
    """`target` becomes another name of the checkpoint file `source` (a stack's, shared by its trials),
    atomically: linked under a temporary name, then renamed over `target`. Where the file system has no
    hard links, `target` is a copy, written as any checkpoint is."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = temporary_path(target, f"{os.getpid()}-link")
    try:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
        os.link(source, partial)
    except OSError:
        write_atomically(target, lambda file: file.write(source.read_bytes()))
        return
    try:
        pause_point(f"checkpoint_link:{target.name}@{epoch}")
        os.replace(partial, target)
    except BaseException as err:
        with contextlib.suppress(OSError):
            partial.unlink()
        if isinstance(err, OSError):
            raise WriteFailed(target, err) from err
        raise


def newest_intact(folder: Path, passing_over: Collection[str] = ()) -> Path | None:
    """The checkpoint of `folder` that stands furthest into training (epoch, then step) among those that
    load, its files named in `passing_over` left out; a damaged one (cut short, not a checkpoint) is passed
    over with a log line."""
    best: tuple[tuple[int, int, int], Path] | None = None
    candidates = sorted(folder.glob("*.ckpt")) if folder.is_dir() else []
    for path in (p for p in candidates if p.name not in passing_over):
        try:
            state = read_checkpoint(path)
            # At the same step: last.ckpt (the epoch's end) before the best epoch's (saved at its validation)
            # and interrupted.ckpt (an interruption right after it).
            preference = {"last.ckpt": 2, "interrupted.ckpt": 0}.get(path.name, 1)
            rank = (int(state["global_step"]), int(state["epoch"]), preference)
        except ForeignObjects as err:
            log.warning("resume: %s is skipped: it %s", path, err.refusal())
            continue
        except Exception as err:  # a damaged file of any kind is skipped, never fatal
            log.warning("resume: %s is damaged and skipped (%s: %s)", path, type(err).__name__, err)
            continue
        if best is None or rank > best[0]:
            best = (rank, path)
    return best[1] if best else None


def resume_checkpoint(run_dir: str | Path) -> str | None:
    """The checkpoint an unfinished run continues from: the newest intact one in its checkpoints/."""
    run = Run(run_dir)
    path = newest_intact(run.checkpoints)
    if path is not None:
        log.info("resume: continuing %s from %s", run.path, path)
    return str(path) if path is not None else None


def check_checkpoint_path(ckpt_path: Any) -> Path:
    """The path, or a ConfigError naming it and what is expected."""
    path = Path(str(ckpt_path)).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"ckpt_path={str(ckpt_path)!r} is not a file. Pass a checkpoint of a digitlab run, e.g. "
            "ckpt_path=logs/runs/<run>/checkpoints/last.ckpt."
        )
    try:
        with open(path, "rb"):
            pass
    except OSError as err:
        raise ConfigError(f"ckpt_path={str(ckpt_path)!r} cannot be read ({err.strerror}).") from None
    return path


def load_checkpoint(ckpt_path: Any) -> tuple[dict[str, Any], DictConfig]:
    """The checkpoint dict and the run's config it carries."""
    path = check_checkpoint_path(ckpt_path)
    try:
        checkpoint = read_checkpoint(path)
    except ForeignObjects as err:
        raise ConfigError(f"ckpt_path={str(ckpt_path)!r} {err.refusal()}") from None
    except NotThisRunsCheckpoint as err:
        raise ConfigError(f"ckpt_path={str(ckpt_path)!r} {err.refusal()}") from None
    except Exception as err:
        raise ConfigError(
            f"ckpt_path={str(ckpt_path)!r} is not a readable checkpoint ({type(err).__name__}: {err})."
        ) from None
    if not isinstance(checkpoint, dict) or CONFIG_KEY not in checkpoint:
        raise ConfigError(
            f"ckpt_path={str(ckpt_path)!r} holds no digitlab config: it was not written by digitlab-train."
        )
    return checkpoint, OmegaConf.create(checkpoint[CONFIG_KEY])


def check_fits(checkpoint: dict[str, Any], model: Any, ckpt_path: Any) -> None:
    """ConfigError when the checkpoint's weights are not those of `model` (another model, other sizes)."""
    held = checkpoint.get("state_dict") or {}
    wanted = model.state_dict()
    differences = [f"{key} is missing" for key in wanted if key not in held]
    differences += [f"{key} is not in this model" for key in held if key not in wanted]
    differences += [
        f"{key} is {list(held[key].shape)} there, {list(value.shape)} here"
        for key, value in wanted.items()
        if key in held and tuple(held[key].shape) != tuple(value.shape)
    ]
    if differences:
        stored = OmegaConf.create(checkpoint.get(CONFIG_KEY) or {})
        model_cfg = OmegaConf.select(stored, "model", default={}) or {}
        settings = {k: v for k, v in OmegaConf.to_container(model_cfg).items() if k in ("_target_", "net")}
        raise ConfigError(
            f"ckpt_path={str(ckpt_path)!r} does not fit this model: {'; '.join(differences[:3])}"
            f"{'; ...' if len(differences) > 3 else ''}. The checkpoint's run trained {settings}; use the same "
            "model settings (its .hydra/config.yaml holds them all), or leave ckpt_path out to start afresh."
        )
