"""Compose a sweep's jobs without composing the same config over and over.

A grid such as `optimizer.lr=0.03,0.1,0.3,1,3,10 seed=0,1,2,3` gives jobs whose overrides differ only in the
values of plain config keys. Hydra composes every one of them from scratch, twice: once when the sweeper
checks the sweep (`job.check_sweep`) and once when the launcher sets the job up, about 0.17 s each on a
2-core machine, which is as long as a stacked trial takes to train. digitlab's sweepers install it on the
Hydra context they share with their launcher (`install`). Composition does not
depend on those values: Hydra builds the defaults list from the group overrides, merges it, and only then
sets the plain values (`ConfigLoaderImpl._apply_overrides_to_config`). `SweepConfigCache` does the first
part once per shape of override list and the second part per job, with Hydra's own function, then fills the
`hydra.overrides.task` field as `load_configuration` does. Whichever path composed it, a job's
`hydra.job.override_dirname` (its folder name) shows floats at 4 significant digits. Anything it
cannot prove equal (a group, `+`/`~`, a `hydra.` key, a dict or list value, keys that overlap) goes to
Hydra's loader unchanged; tests compare the two. And a job asked for again (the launcher after the sweeper's
check) gets the config composed the first time, and is neither checked nor resolved again (`note_checked`).
"""

from __future__ import annotations

import copy
import pickle
from collections import OrderedDict
from typing import Any

from hydra.core.config_loader import ConfigLoader
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType
from omegaconf import DictConfig, OmegaConf

from digitlab.compat.hydra import apply_overrides, overrides_dirname
from digitlab.console import shown_value

MAX_COMPOSED_JOBS = 1024  # a batch of jobs, checked then launched, is composed once (a few 100 kB each)


class SweepConfigCache(ConfigLoader):
    """Hydra's config loader, with `load_sweep_config` composing each shape of override list once."""

    def __init__(self, loader: ConfigLoader) -> None:
        self.loader = loader
        self._parser = OverridesParser.create()
        # (master config id, override lines with the plain values left out) -> (master, composed template,
        # `_frozen`)
        self._templates: dict[tuple[int, tuple[str, ...]], tuple[DictConfig, bytes | DictConfig]] = {}
        # (master config id, a job's override list) -> (master, its composed config), the newest last
        self._jobs: OrderedDict[tuple[int, tuple[str, ...]], tuple[DictConfig, DictConfig]] = OrderedDict()
        # Jobs `job.check_sweep` passed, placed: their task configs as the check resolved them.
        self._checked: dict[tuple[int, tuple[str, ...]], DictConfig] = {}

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled with the launcher into a SLURM job (submitit): the loader travels, the cache is rebuilt.
        return (SweepConfigCache, (self.loader,))

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        # The sweeper composes each job to check it, then the launcher composes it again to run it: the
        # second time is the first one's config (both set the same job number and folder on it; Hydra's
        # `run_job` works on a copy).
        job = (id(master_config), tuple(sweep_overrides))
        composed = self._jobs.get(job)
        if composed is not None and composed[0] is master_config:
            self._jobs.move_to_end(job)
            OmegaConf.set_readonly(composed[1].hydra, None)  # as composed: `HydraConfig.set_config` froze it
            return composed[1]
        cfg = self._load_sweep_config(master_config, sweep_overrides)
        self._jobs[job] = (master_config, cfg)
        if len(self._jobs) > MAX_COMPOSED_JOBS:
            self._jobs.popitem(last=False)
        return cfg

    def note_checked(
        self, master_config: DictConfig, sweep_overrides: list[str], resolved: DictConfig
    ) -> None:
        """The job passed `job.check_job` in its folder (the sweeper checks every job before any runs);
        `resolved`: its task config, resolved there (`job.resolved_task`)."""
        self._checked[(id(master_config), tuple(sweep_overrides))] = resolved

    def checked_config(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig | None:
        """A checked job's task config, resolved when it was checked (None: not checked here): the stacked
        launcher takes it rather than checking and resolving the job again."""
        return self._checked.get((id(master_config), tuple(sweep_overrides)))

    def _load_sweep_config(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        overrides = self._parser.parse_overrides(list(sweep_overrides))
        cfg = self._compose(master_config, sweep_overrides, overrides)
        # The job's folder name (`hydra.sweep.subdir`) with numbers as people read them: an Optuna lr
        # 0.012345678901 names `optimizer.lr=0.01235`; the job number before it keeps names unique.
        dirname = cfg.hydra.job.config.override_dirname
        cfg.hydra.job.override_dirname = overrides_dirname(
            overrides=[_shown(o) for o in overrides if not o.is_hydra_override()],
            kv_sep=dirname.kv_sep,
            item_sep=dirname.item_sep,
            exclude_keys=dirname.exclude_keys,
        )
        return cfg

    def _compose(
        self, master_config: DictConfig, sweep_overrides: list[str], overrides: list[Override]
    ) -> DictConfig:
        plain = self._plain(overrides)
        if not plain:
            return self.loader.load_sweep_config(master_config, list(sweep_overrides))
        plain_ids = {id(o) for o in plain}
        rest = [o.input_line for o in overrides if id(o) not in plain_ids]
        key = (id(master_config), tuple(rest) + tuple(f"{o.key_or_group}=" for o in plain))
        cached = self._templates.get(key)
        if cached is None or cached[0] is not master_config:
            # The config as Hydra has it just before it sets the plain values: these values do not change
            # the defaults list, and no other override touches their keys, so their order does not matter.
            self._templates[key] = cached = (
                master_config,
                _frozen(self.loader.load_sweep_config(master_config, rest)),
            )
        cfg = _thawed(cached[1])
        apply_overrides(plain, cfg)  # Hydra's own setter: its checks, its errors
        task = [o for o in overrides if not o.is_hydra_override()]
        cfg.hydra.overrides.task = [o.input_line for o in task]
        OmegaConf.copy_cache(from_config=master_config, to_config=cfg)
        return cfg

    def _plain(self, overrides: list[Override]) -> list[Override]:
        """The overrides that only set a value, on a key no other override touches."""
        plain = [o for o in overrides if self._sets_a_value(o)]
        keys = [o.key_or_group for o in overrides]
        for override in list(plain):
            key = override.key_or_group
            if sum(_overlap(key, other) for other in keys) > 1:
                plain.remove(override)
        return plain

    def _sets_a_value(self, override: Override) -> bool:
        if (
            override.type != OverrideType.CHANGE
            or override.package is not None
            or override.is_hydra_override()
        ):
            return False
        if override.is_sweep_override() or isinstance(override.value(), dict | list):
            return False
        repository = getattr(self.loader, "repository", None)
        return repository is not None and not repository.group_exists(override.key_or_group)

    # The rest of the interface is Hydra's loader's.
    def load_configuration(self, *args: Any, **kwargs: Any) -> DictConfig:
        return self.loader.load_configuration(*args, **kwargs)

    def get_search_path(self) -> Any:
        return self.loader.get_search_path()

    def get_sources(self) -> Any:
        return self.loader.get_sources()

    def list_groups(self, parent_name: str) -> list[str]:
        return self.loader.list_groups(parent_name)

    def get_group_options(self, *args: Any, **kwargs: Any) -> list[str]:
        return self.loader.get_group_options(*args, **kwargs)

    def compute_defaults_list(self, *args: Any, **kwargs: Any) -> Any:
        return self.loader.compute_defaults_list(*args, **kwargs)


def _frozen(template: DictConfig) -> bytes | DictConfig:
    """The template as each job's copy is made from it: pickled, since unpickling a copy takes a quarter of
    what `copy.deepcopy` takes (1.2 against 4.9 ms a job at the chapter's linear experiment; every node's
    flags and types the same); as it is when it does not pickle (a launcher's structured config whose class
    Hydra's plugin scan imported twice: joblib's and submitit's)."""
    try:
        return pickle.dumps(template)
    except (pickle.PicklingError, TypeError, AttributeError):
        return template


def _thawed(frozen: bytes | DictConfig) -> DictConfig:
    # bytes digitlab itself pickled in this process, never read from a file
    return pickle.loads(frozen) if isinstance(frozen, bytes) else copy.deepcopy(frozen)


def install(hydra_context: Any) -> None:
    """Compose through the cache from now on, for the sweeper and the launcher of this Hydra context alike
    (the context object is shared, so it is replaced in place)."""
    if not isinstance(hydra_context.config_loader, SweepConfigCache):
        hydra_context.config_loader = SweepConfigCache(hydra_context.config_loader)


def _shown(override: Override) -> Override:
    """`override` with a float value of more than 4 significant digits written as `console.shown_value`
    writes it, for a folder name; a value as short as that stays as typed (`optimizer.lr=2.0`)."""
    if override.type != OverrideType.CHANGE or override.is_sweep_override():
        return override
    value = override.value()
    if not isinstance(value, float) or float(shown_value(value)) == value:
        return override
    shown = copy.copy(override)
    shown.input_line = f"{override.get_key_element()}={shown_value(value)}"
    return shown


def _overlap(key: str, other: str) -> bool:
    return key == other or other.startswith(key + ".") or key.startswith(other + ".")
