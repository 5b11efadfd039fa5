"""The run folder, the unit that sweeps, compare, resume, eval and predict speak about. This module names
every file in it; writers and readers use these names (conf/callbacks/default.yaml and conf/logger/ spell
the two folders Lightning's own classes write, and a test holds them equal to these).

    .hydra/            config.yaml (composed), overrides.yaml, hydra.yaml
    config.json        the composed config, resolved (what compare reads); also inside every checkpoint
    events.out.tfevents.*  TensorBoard's event files (scalars, hparams, pictures), in the run folder itself:
                       TensorBoard names a run by the folder holding them, so a sweep's runs are its jobs
    checkpoints/       the best epoch, last.ckpt (every epoch), interrupted.ckpt (on an exception)
    pictures/          the TensorBoard pictures as PNGs
    provenance.json    what produced the run: code commit, library versions, command line, host
    code.diff          the uncommitted changes of the code, when there were any
    metrics.json       the final record, written last: the last validated epoch's metrics and `status`:
                       completed or pruned (finished), failed or interrupted (`resume=true` continues it)

Every file is written atomically (`digitlab.atomic`). A file that cannot be read is not an error for the
readers: `Run.unreadable` says why, and compare lists the run as unreadable.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf

import digitlab.atomic as atomic
from digitlab.config.location import register_resolvers

HYDRA_DIR = ".hydra"
CONFIG_JSON = "config.json"
OLD_TENSORBOARD_DIR = "tensorboard"  # where runs before 2026-12 kept their event files (still read)
CHECKPOINTS_DIR = "checkpoints"
PICTURES_DIR = "pictures"
METRICS_JSON = "metrics.json"
PROVENANCE_JSON = "provenance.json"
CODE_DIFF = "code.diff"
LR_FIND_JSON = "lr_find.json"  # an lr finder's result (`lr_find=true`): its folder holds no trained run
LR_FIND_PNG = "lr_find.png"
LAST_CHECKPOINT = "last.ckpt"
INTERRUPTED_CHECKPOINT = "interrupted.ckpt"
# metrics.json's `status`: every epoch trained, or stopped by an Optuna pruner (callbacks/pruning.py): the
# run is finished; or ended by an error, or by Ctrl-C / SIGTERM: `resume=true` continues it.
COMPLETED = "completed"
PRUNED = "pruned"
FAILED = "failed"
INTERRUPTED = "interrupted"
FINISHED = (COMPLETED, PRUNED)
INCOMPLETE = "incomplete"  # no metrics.json: running, or killed outright
UNREADABLE = "unreadable"  # a file of the run is damaged (`Run.unreadable` says which and why)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Run:
    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS_DIR

    @property
    def tensorboard(self) -> Path:
        """The folder of the run's TensorBoard event files: the run folder (or, for an older run, its
        `tensorboard/`)."""
        old = self.path / OLD_TENSORBOARD_DIR
        return old if old.is_dir() else self.path

    @property
    def pictures(self) -> Path:
        return self.path / PICTURES_DIR

    @property
    def hydra_dir(self) -> Path:
        return self.path / HYDRA_DIR

    def remove_leftovers(self) -> None:
        """The temporary files a killed writer left in this run's folder and the folders digitlab writes in
        it (`atomic.remove_leftovers`); nothing else, whatever folder the run was given."""
        atomic.remove_leftovers([self.path, self.hydra_dir, self.checkpoints, self.pictures])

    def write_config(self, config: dict[str, Any]) -> None:
        atomic.write_json(self.path / CONFIG_JSON, config)

    def write_provenance(self, provenance: dict[str, Any]) -> None:
        from digitlab.provenance import diff

        changes = diff()
        if changes:
            atomic.write_text(self.path / CODE_DIFF, changes)
        atomic.write_json(self.path / PROVENANCE_JSON, provenance)

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        """The final record, written last."""
        atomic.write_json(self.path / METRICS_JSON, metrics)

    @cached_property
    def config(self) -> dict[str, Any]:
        """The run's composed config, resolved: `config.json`, which the run writes when fit starts. For a
        run without one (stopped before fit), from `.hydra/`: its `${hydra:...}` values (e.g.
        `experiment_name`) are read from its own `hydra.yaml`, by turning them into plain interpolations."""
        resolved = self.path / CONFIG_JSON
        if resolved.exists():
            return _mapping(read_json(resolved), CONFIG_JSON)
        text = (self.hydra_dir / "config.yaml").read_text()
        hydra_yaml = self.hydra_dir / "hydra.yaml"
        if not hydra_yaml.exists():
            return OmegaConf.to_container(OmegaConf.create(text), resolve=True)  # written resolved by the API
        register_resolvers()
        cfg = OmegaConf.create(
            text.replace("${hydra:", "${hydra.").replace("${cwd:}", "${hydra.runtime.cwd}")
        )
        cfg.hydra = OmegaConf.load(hydra_yaml).hydra
        # Resolve all but the hydra node itself, whose own values need resolvers of a live Hydra app.
        return {key: _resolved(cfg, key) for key in cfg if key != "hydra"}

    @cached_property
    def overrides(self) -> list[str]:
        path = self.hydra_dir / "overrides.yaml"
        return [str(o) for o in OmegaConf.load(path)] if path.exists() else []

    @cached_property
    def hydra(self) -> dict[str, Any]:
        """Hydra's own config of the run (`.hydra/hydra.yaml`, unresolved), e.g. its sweeper's settings."""
        path = self.hydra_dir / "hydra.yaml"
        if not path.exists():
            return {}
        # libyaml's safe loader: OmegaConf.load took ~40 ms per run, most of compare's time on a 256-run sweep.
        with open(path) as f:
            return yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))["hydra"]

    @cached_property
    def metrics(self) -> dict[str, Any] | None:
        """`metrics.json`, its types checked (`check_metrics`); None for a run that has none yet."""
        path = self.path / METRICS_JSON
        return check_metrics(read_json(path)) if path.exists() else None

    @cached_property
    def provenance(self) -> dict[str, Any] | None:
        path = self.path / PROVENANCE_JSON
        return _mapping(read_json(path), PROVENANCE_JSON) if path.exists() else None

    @cached_property
    def unreadable(self) -> str | None:
        """Why this run's record cannot be read (a damaged or unreadable file), or None when it can."""
        for name, read in (("metrics.json", "metrics"), ("config", "config"), ("provenance", "provenance")):
            try:
                getattr(self, read)
            except Exception as err:  # any damage: a reader lists the run and goes on with the rest
                return f"{name}: {_reason(err)}"
        return None

    @cached_property
    def scalars(self) -> dict[str, list[tuple[int, float]]]:
        """Every scalar in the run's TensorBoard event files as `tag -> [(step, value)]`, read once."""
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        log_dir = self.tensorboard
        if not log_dir.is_dir():
            return {}
        events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 1, "tensors": 1})
        events.Reload()
        return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}

    @property
    def is_lr_find(self) -> bool:
        """An lr finder's folder (`lr_find=true`): no trained run, so no row of a comparison."""
        if (self.path / LR_FIND_JSON).exists():
            return True
        # A finder stopped before it wrote its result: its command line says so. Read as text, not parsed:
        # compare asks this of every run it finds (a YAML parse each was 1 ms a run).
        overrides = self.hydra_dir / "overrides.yaml"
        return (
            overrides.is_file() and re.search(r"^- \+?lr_find=true$", overrides.read_text(), re.M) is not None
        )

    @property
    def completed(self) -> bool:
        """Whether the run finished: all its epochs, or pruned. Failed and interrupted runs have not."""
        return self.status in FINISHED

    @property
    def status(self) -> str:
        """metrics.json's `status` (a run older than the key: completed); `incomplete` without one (running
        or killed), `unreadable` when a file of it cannot be read."""
        if self.unreadable:
            return UNREADABLE
        if self.metrics is None:
            return INCOMPLETE
        return self.metrics.get("status", COMPLETED)

    def setting(self, dotted_key: str, default: Any = None) -> Any:
        """A value of the composed config by dotted key, e.g. `optimizer.lr` (`default` for an unreadable run)."""
        if self.unreadable:
            return default
        node: Any = self.config
        for part in dotted_key.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node


def _resolved(cfg: Any, key: str) -> Any:
    node = cfg[key]
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def is_run_dir(path: Path) -> bool:
    return (path / HYDRA_DIR / "config.yaml").is_file()


def find_runs(root: str | Path) -> list[Run]:
    """Every run dir at or below `root` (a run, a sweep, or a whole logs folder), in path order; an lr finder's
    folder is no run."""
    root = Path(root)
    found = [root] if is_run_dir(root) else []
    found += [p.parent.parent for p in root.rglob(f"{HYDRA_DIR}/config.yaml") if p.parent.parent != root]
    # A run reached twice (a symlinked sweep folder beside its target) is one run: counted once.
    once = {path.resolve(): path for path in sorted(set(found), key=_natural, reverse=True)}
    runs = [Run(path) for path in sorted(once.values(), key=_natural)]
    return [run for run in runs if not _lr_find_or_unreadable(run)]


def _lr_find_or_unreadable(run: Run) -> bool:
    """An lr finder's folder (whose overrides.yaml, if damaged, leaves it a run: compare lists it unreadable)."""
    try:
        return run.is_lr_find
    except Exception:
        return False


def _natural(path: Path) -> list:
    """Sort key that puts sweep job `9_...` before `10_...`."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


# metrics.json's schema: the counts, the timings, the strings; every other key is a metric (a number).
_COUNTS = ("epochs", "steps", "parameters", "pruned_epoch", "stacked_with")
_SECONDS = ("wall_time_s", "epoch_time_s")
_TEXTS = ("error",)
STATUSES = (COMPLETED, PRUNED, FAILED, INTERRUPTED)


def check_metrics(record: Any) -> dict[str, Any]:
    """`record` (metrics.json as read) if its types are the record's own, else ValueError saying which key
    holds what: every reader gets numbers where numbers belong, or the run is one "unreadable" row."""
    record = _mapping(record, METRICS_JSON)
    for key, value in record.items():
        if key == "status":
            ok, wanted = value in STATUSES, f"one of {', '.join(STATUSES)}"
        elif key in _COUNTS:
            ok, wanted = _number(value) and float(value).is_integer() and value >= 0, "a whole number >= 0"
        elif key in _SECONDS:
            ok, wanted = value is None or _number(value), "a number of seconds"
        elif key in _TEXTS:
            ok, wanted = isinstance(value, str), "a text"
        else:
            ok, wanted = _number(value), "a number"
        if not ok:
            raise ValueError(f"{key}={value!r} is not {wanted}")
    return record


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _mapping(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"it holds a JSON {type(value).__name__}, not an object of keys and values")
    return value


def _reason(err: Exception) -> str:
    if isinstance(err, json.JSONDecodeError):
        return f"not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}): damaged or cut short"
    if isinstance(err, OSError):
        return f"{err.strerror or err}"
    if isinstance(err, ValueError):  # a record whose types are not its schema's (`check_metrics`)
        return str(err)
    return f"{type(err).__name__}: {err}"
