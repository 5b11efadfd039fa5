"""A run dir is the unit that sweeps, compare, resume and eval speak about: `.hydra/` (its config and
overrides), `tensorboard/`, `checkpoints/`, and `metrics.json`, written last, so its presence means the run
completed. This module finds run dirs under a folder and reads them; it knows nothing of training.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf


@dataclass(frozen=True)
class Run:
    path: Path

    @cached_property
    def config(self) -> dict[str, Any]:
        """The run's composed config, resolved: `config.json`, which the run writes when fit starts. For a
        run without one (stopped before fit), from `.hydra/`: its `${hydra:...}` values (e.g.
        `experiment_name`) are read from its own `hydra.yaml`, by turning them into plain interpolations."""
        resolved = self.path / "config.json"
        if resolved.exists():
            return json.loads(resolved.read_text())
        text = (self.path / ".hydra" / "config.yaml").read_text()
        hydra_yaml = self.path / ".hydra" / "hydra.yaml"
        if not hydra_yaml.exists():
            return OmegaConf.to_container(OmegaConf.create(text), resolve=True)  # written resolved by the API
        cfg = OmegaConf.create(
            text.replace("${hydra:", "${hydra.").replace("${cwd:}", "${hydra.runtime.cwd}")
        )
        cfg.hydra = OmegaConf.load(hydra_yaml).hydra
        # Resolve all but the hydra node itself, whose own values need resolvers of a live Hydra app.
        return {key: _resolved(cfg, key) for key in cfg if key != "hydra"}

    @cached_property
    def overrides(self) -> list[str]:
        path = self.path / ".hydra" / "overrides.yaml"
        return [str(o) for o in OmegaConf.load(path)] if path.exists() else []

    @cached_property
    def metrics(self) -> dict[str, Any] | None:
        path = self.path / "metrics.json"
        return json.loads(path.read_text()) if path.exists() else None

    @cached_property
    def scalars(self) -> dict[str, list[tuple[int, float]]]:
        """Every scalar in the run's TensorBoard event files as `tag -> [(step, value)]`, read once."""
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        logging.getLogger("tensorboard").setLevel(logging.WARNING)  # its file watcher chats at INFO
        log_dir = self.path / "tensorboard"
        if not log_dir.is_dir():
            return {}
        events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 1, "tensors": 1})
        events.Reload()
        return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}

    @property
    def completed(self) -> bool:
        return (self.path / "metrics.json").exists()

    def setting(self, dotted_key: str, default: Any = None) -> Any:
        """A value of the composed config by dotted key, e.g. `optimizer.lr`."""
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
    return (path / ".hydra" / "config.yaml").is_file()


def find_runs(root: str | Path) -> list[Run]:
    """Every run dir at or below `root` (a run, a sweep, or a whole logs folder), in path order."""
    root = Path(root)
    found = [root] if is_run_dir(root) else []
    found += [p.parent.parent for p in root.rglob(".hydra/config.yaml") if p.parent.parent != root]
    return [Run(path) for path in sorted(set(found), key=_natural)]


def _natural(path: Path) -> list:
    """Sort key that puts sweep job `9_...` before `10_...`."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]
