"""Checks that turn bad input into one clear paragraph before any work starts: it names what the user typed
(the `key=value` or `group=option`) and what is allowed.

- `check_group_overrides`: the command line itself, before Hydra composes (a group set to null);
- `check_creatable`, `check_holds_no_run`: a run or sweep folder (used by `job.OutputDirsCheck` before
  Hydra creates it);
- `validate`: a composed config: values in range, options that work together, every `_target_`'s keys
  accepted by it, the checkpoint and output folder usable, the accelerator present.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import os
import shlex
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from digitlab.config.hparams import MODEL_PARTS
from digitlab.config.location import config_dir
from digitlab.errors import ConfigError
from digitlab.settings import BOOLEAN, Rule, optional, whole


def check_group_overrides(overrides: Sequence[str]) -> None:
    """`logger=null` (any config group set to null) stops Hydra with a traceback; say what works instead."""
    root = config_dir()
    for override in overrides:
        key, sep, value = override.partition("=")
        group = key.lstrip("+")
        if sep and value == "null" and group and (root / group).is_dir():
            raise ConfigError(
                f"{override} is not an option of the config group {group!r}: a group cannot be set to null "
                f"on the command line. Switch it off with ~{group} (Hydra's delete syntax), or pick one of: "
                f"{', '.join(options(group))}."
            )


def check_override_grammar(argv: Sequence[str]) -> None:
    """An override Hydra's grammar cannot read, typically a path whose folder names hold `=` and `,` (every
    sweep job's folder does: `0_optimizer.lr=0.1,seed=0`), brackets or non-ASCII letters: Hydra would say
    only "mismatched input '='". Named, with the quoted form that works."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        try:
            parser.parse_overrides([arg])
        except OverrideParseException as err:
            key, _, value = arg.partition("=")
            quote = '"' if "'" in value else "'"
            quoted = f"{key}={quote}{value}{quote}"
            raise ConfigError(
                f"{arg!r} cannot be read as a Hydra override ({str(err).splitlines()[0]}): its value holds "
                "characters Hydra's grammar reads as syntax (=, comma, brackets, parentheses) or cannot read "
                "unquoted (non-ASCII letters). Quote the value for Hydra, and the whole for the shell: "
                f"{_for_the_shell(quoted)}"
            ) from None


def _for_the_shell(arg: str) -> str:
    """`arg` as one shell word: in double quotes when nothing in it is special there (reads best beside
    Hydra's single quotes), else as `shlex.quote` writes it."""
    return f'"{arg}"' if not any(c in arg for c in '"$`\\!') else shlex.quote(arg)


def check_sweep_lists(overrides: Sequence[Any]) -> None:
    """A value listed twice in one sweep (`optimizer.lr=0.1,0.1`, `seed=0,0`, `0.1,0.10`) would train the
    same job twice and count it as two runs of one row: refused, naming the override and the value.
    `overrides`: Hydra's parsed overrides (`Override`)."""
    for override in overrides:
        if not override.is_sweep_override() or override.is_interval_sweep():  # an interval lists nothing
            continue
        seen: set[str] = set()
        for value in override.sweep_iterator():
            shown = repr(value)
            if shown in seen:
                raise ConfigError(
                    f"{override.input_line} lists {value!r} more than once: a sweep would train the same job "
                    "twice and count it as two runs (a search would ask it twice as often). List each value once."
                )
            seen.add(shown)


def check_override_keys(argv: Sequence[str]) -> None:
    """A value set on a key the composed config does not have (`optimizer.lrr=1`, `trainer.profiler=simple`)
    stops Hydra with `Key 'lrr' is not in struct`; this says which keys that node has, the closest one, and
    how to add a key (`+key=value`). The config is composed here for it, with the command's group choices
    (a sweep's first), only when the command sets a plain key; anything else Hydra reports itself."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType
    from hydra.errors import HydraException

    from digitlab.compat.hydra import args_parser

    args, _ = args_parser().parse_known_args(list(argv))
    if args.config_name or args.config_path or args.config_dir or args.help or args.hydra_help:
        return
    try:
        parsed = OverridesParser.create().parse_overrides(list(args.overrides))
    except HydraException:
        return  # a syntax error: Hydra's own message names it
    root = config_dir()
    structure, plain, first = [], [], []
    for override in parsed:
        key = override.key_or_group
        if override.is_hydra_override() or key.split(".", 1)[0] == "hydra":
            continue
        if override.type == OverrideType.CHANGE and not (root / key.replace(".", "/")).is_dir():
            if override.package is None:
                plain.append(override)
            continue
        value = override.value()
        if override.is_sweep_override():
            if not override.is_discrete_sweep():
                continue
            value = next(iter(override.sweep_string_iterator()), None)
            first.append(f"{override.get_key_element()}={value}")
        else:
            value = override.get_value_element_as_str()
        structure.append(f"{override.get_key_element()}={value}")
    if not plain:
        return
    from hydra import compose, initialize_config_dir

    try:
        with initialize_config_dir(str(root), version_base="1.3"):
            cfg = compose("config", overrides=structure)
    except HydraException:
        return  # a bad group choice or addition: Hydra's own message names it
    composed_as = f" (with {' '.join(first)}, the sweep's first job)" if first else ""
    for override in plain:
        _check_key_exists(cfg, override.key_or_group, override.input_line, composed_as)


def _check_key_exists(cfg: DictConfig, key: str, typed: str, composed_as: str) -> None:
    import difflib

    parts = key.split(".")
    node: Any = cfg
    for depth, part in enumerate(parts):
        if not isinstance(node, DictConfig) or part not in node:
            break
        if OmegaConf.is_interpolation(node, part):
            if depth + 1 == len(parts):
                return  # the key itself: a value replaces the reference
            here, rest = ".".join(parts[: depth + 1]), ".".join(parts[depth + 1 :])
            target = str(OmegaConf.to_container(node, resolve=False)[part])
            refers = target[2:-1] if target.startswith("${") and target.endswith("}") else None
            instead = f"Set {refers}.{rest}={typed.split('=', 1)[1]} instead." if refers else ""
            raise ConfigError(
                f"{typed}: {here} is {target}, a reference Hydra cannot set a value through. {instead}".strip()
            )
        node = node[part]
    else:
        return
    parent = ".".join(parts[:depth]) or "the config"
    if not isinstance(node, DictConfig):
        raise ConfigError(
            f"{typed}: {parent} is a value ({node!r}), not a group of settings, so it has no key "
            f"{part!r}{composed_as}. Set {parent}=<value> instead."
        )
    keys = [str(k) for k in node]
    close = difflib.get_close_matches(part, keys, n=1)
    hint = f" Did you mean {'.'.join([*parts[:depth], close[0]])}?" if close else ""
    raise ConfigError(
        f"{typed}: {parent} has no key {part!r}{composed_as}; its keys are {', '.join(keys)}.{hint} To add a "
        f"key the config does not have, write +{typed} (a setting of a `_target_` node must still be an "
        "argument of its target)."
    )


def options(group: str) -> list[str]:
    """The options of a config group: the YAML files in `conf/<group>/`."""
    return sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))


def check_creatable(key: str, path: str | Path) -> None:
    """ConfigError naming `key=path` unless the folder exists and is writable or can be created. Tried for
    real (a temporary folder made and removed in its nearest existing parent): permission bits do not tell
    root that /proc or a read-only mount refuses new folders."""
    path = Path(path).expanduser().absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        reason = f"{existing} is a file"
    else:
        try:
            os.rmdir(tempfile.mkdtemp(prefix=".digitlab-check-", dir=existing))
            return
        except OSError as err:
            reason = f"{existing}: {err.strerror}"
    raise ConfigError(
        f"{key}={str(path)!r} is not writable: that folder cannot be created or written ({reason}). Choose a "
        "folder you can write to, e.g. paths.log_dir=<folder>, hydra.run.dir=<folder> or hydra.sweep.dir=<folder>."
    )


def check_plugin(node: DictConfig, key: str) -> None:
    """A Hydra plugin's settings (`hydra.launcher`, `hydra.sweeper`) against the rules its class declares
    (`settings.takes`, `settings.FOREIGN`), before Hydra makes it: a bad one is a ConfigError naming
    `<key>.<name>=<value>`, not a traceback from inside the plugin."""
    from digitlab.settings import check, rules_of

    target = node.get("_target_") if isinstance(node, DictConfig) else None
    if not target:
        return
    try:
        rules = rules_of(_object(target))
    except Exception:  # a plugin that does not import: Hydra says so itself
        return
    check(rules, {name: _plain(node[name]) for name in rules if name in node}, prefix=f"{key}.")


def check_holds_no_run(output_dir: str | Path) -> None:
    """A folder that holds a run (its metrics.json or checkpoints) is never trained into afresh: its record
    would be replaced and its checkpoints mixed with the new run's."""
    from digitlab.rundir import Run

    run = Run(output_dir)
    checkpoints = sorted(run.checkpoints.glob("*.ckpt")) if run.checkpoints.is_dir() else []
    held = [p.name for p in (run.path / "metrics.json", *checkpoints) if p.exists()]
    if held:
        elsewhere = (
            "sweep into another folder (hydra.sweep.dir=<another folder>, or leave it unset for a new one)"
            if _in_a_sweep()
            else "train into another folder (leave hydra.run.dir unset for a new one)"
        )
        raise ConfigError(
            f"paths.output_dir={str(run.path)!r} already holds a run ({', '.join(held[:4])}"
            f"{', ...' if len(held) > 4 else ''}): training into it again would replace its record and mix "
            "its checkpoints with the new run's. Add resume=true to continue that run (a finished one is "
            f"skipped), or {elsewhere}."
        )


def _in_a_sweep() -> bool:
    """Whether the job being checked is one of a `-m` sweep (its folder is then `hydra.sweep.dir`'s)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


# The run's own settings (config.yaml's top level), which `training.train` takes.
RUN_SETTINGS = {
    "seed": whole(0, at_most=2**32 - 1),  # numpy's seeds end there
    "resume": BOOLEAN,
    "lr_find": BOOLEAN,
    "print_config": BOOLEAN,
    "torch_threads": optional(whole(1)),
    "ckpt_path": optional(Rule(lambda v: isinstance(v, str) and v != "", "the path of a checkpoint file")),
    "optimized_metric": optional(
        Rule(
            lambda v: isinstance(v, str) or (isinstance(v, list) and all(isinstance(m, str) for m in v)),
            "a metric name of metrics.json (e.g. val/acc_best) or a list of them",
        )
    ),
    "tags": Rule(
        lambda v: isinstance(v, list) and all(isinstance(t, str | int) for t in v), "a list, e.g. [a,b]"
    ),
    "notes": Rule(lambda v: isinstance(v, str), "a text"),
}


# Groups a model uses only if its config names them (the pixel-similarity baseline uses none).


def validate(
    cfg: DictConfig,
    choices: Mapping[str, Any] | None = None,
    overrides: Sequence[str] = (),
    dataset: bool = True,
    machine: bool = True,
) -> None:
    """Raise ConfigError naming the first bad key or choice, its value and what is allowed.

    The run's own settings are checked against `RUN_SETTINGS`; every `_target_` node against its
    target: its keys must be arguments of it, and its values pass the rules it declares (`settings.takes`);
    the optimizer and scheduler are built for real on a stand-in parameter. `choices` are Hydra's group
    choices (`hydra.runtime.choices`) and `overrides` the command line, used to name what the user typed;
    without them, options are named by their `_target_`. Last, unless `dataset=False` (a sweep checks its
    datasets once every job's settings passed), the dataset itself (`check_dataset`). `machine=False`: what
    this machine can serve is not checked here (a SLURM job checks it on its node, `runs_elsewhere`).
    """
    from digitlab.settings import check, rules_of

    choices = dict(choices or {})
    check(RUN_SETTINGS, {key: _plain(cfg[key]) for key in RUN_SETTINGS if key in cfg})
    keys = target_keys(cfg)
    for key in keys:
        _check_arguments(cfg, key, choices)
        node = OmegaConf.select(cfg, key)
        rules = rules_of(_target(cfg, key))
        check(rules, {name: _plain(node[name]) for name in rules if name in node}, prefix=f"{key}.")
    _check_combinations(cfg, choices, overrides)
    _check_extras(cfg, keys, choices)
    _check_optimization(cfg, choices)
    if OmegaConf.select(cfg, "ckpt_path"):
        from digitlab.build import check_checkpoint_fits

        check_checkpoint_fits(cfg.ckpt_path, cfg)
    output_dir = OmegaConf.select(cfg, "paths.output_dir")
    if output_dir:
        check_creatable("paths.output_dir", output_dir)
    if machine:
        _check_machine(cfg, choices)
        _check_trainer(cfg)
    if dataset:
        check_dataset(dataset_of(cfg))


def runs_elsewhere(config: DictConfig) -> bool:
    """Whether the sweep's launcher runs its jobs on other machines (SLURM, through submitit): then the GPUs,
    cores and precision a job asks for are checked where it runs, not on the machine that submits it."""
    target = OmegaConf.select(config, "hydra.launcher._target_")
    try:
        cls = _object(target) if target else None
    except Exception:
        return False
    return any(base.__name__ == "SlurmLauncher" for base in getattr(cls, "__mro__", ()))


def _check_machine(cfg: DictConfig, choices: dict[str, Any]) -> None:
    """What this machine cannot serve is refused before work, naming what the user chose: a GPU where torch
    sees none, more devices than there are, fp16 mixed precision on the CPU (Lightning would train in bf16
    instead, while config.json says 16-mixed)."""
    accelerator = OmegaConf.select(cfg, "trainer.accelerator")
    devices = OmegaConf.select(cfg, "trainer.devices")
    chosen = (
        f"accelerator={choices['accelerator']}" if choices.get("accelerator") else "the accelerator group"
    )
    on_gpu = accelerator in ("gpu", "cuda")
    if on_gpu:
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(
                f"trainer.accelerator={accelerator!r} was asked for ({chosen}), but this machine has no CUDA GPU "
                "that torch can use. Run on the CPU with accelerator=cpu."
            )
        available, unit = torch.cuda.device_count(), "CUDA GPUs"
    else:
        available, unit = os.cpu_count() or 1, "CPU cores"
    counted = on_gpu or accelerator == "cpu"  # `auto` and others: Lightning picks, and says what it picked
    if counted and isinstance(devices, int) and not isinstance(devices, bool) and devices > available:
        raise ConfigError(
            f"trainer.devices={devices} asks for {devices} {'GPUs' if on_gpu else 'training processes'} "
            f"({chosen}), but this machine has {available} {unit}. Use trainer.devices={available} or fewer "
            "(-1: all of them)."
        )
    precision = str(OmegaConf.select(cfg, "trainer.precision") or "")
    if not on_gpu and precision in ("16-mixed", "16"):
        raise ConfigError(
            f"trainer.precision={precision!r} is fp16 mixed precision, which needs a CUDA GPU ({chosen} trains "
            "on the CPU, where Lightning would switch to bf16 without saying so in the run's record). Use "
            "trainer.precision=bf16-mixed, or 32-true."
        )


def _check_trainer(cfg: DictConfig) -> None:
    """Every `trainer.*` value Lightning's Trainer refuses (`trainer.devices=0`, a strategy the accelerator
    cannot run), refused here before any folder exists, naming the key: the Trainer is built for real, with
    no logger, callback or folder of its own (quietly, once per distinct trainer config in a process)."""
    node = OmegaConf.select(cfg, "trainer")
    if not OmegaConf.is_dict(node):
        return
    settings = {
        key: value
        for key, value in OmegaConf.to_container(node, resolve=True).items()
        if key != "default_root_dir"
    }
    refusal = _trainer_refusal(json.dumps(settings, sort_keys=True, default=str))
    if refusal is None:
        return
    keys = [key for key in settings if key != "_target_"]
    # The key the refusal names as an argument (`Trainer(devices=0)`, `max_steps`), else any it mentions.
    named = [key for key in keys if f"{key}=" in refusal or f"`{key}`" in refusal]
    named = named or [key for key in keys if key in refusal]
    shown = ", ".join(f"trainer.{key}={settings[key]!r}" for key in named) or "the trainer settings"
    raise ConfigError(
        f"{shown}: Lightning's Trainer refuses {'it' if len(named) == 1 else 'them'}: {refusal}"
    )


@functools.lru_cache(maxsize=64)
def _trainer_refusal(settings_json: str) -> str | None:
    """Why Lightning's Trainer refuses these settings (its error's first line), or None."""
    from hydra.utils import instantiate

    from digitlab.process import quiet_lightning

    settings = json.loads(settings_json)
    try:  # "GPU available: False ...": said by the real run, not by its check
        with quiet_lightning(), tempfile.TemporaryDirectory() as folder:
            instantiate(
                settings,
                default_root_dir=folder,
                logger=False,
                enable_checkpointing=False,
                enable_progress_bar=False,
                enable_model_summary=False,
            )
    except Exception as err:  # Lightning's MisconfigurationException, ValueError, TypeError alike
        cause = err.__cause__ or err  # Hydra's InstantiationException wraps the Trainer's own error
        return str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    return None


# The data settings whose dataset this process checked (a sweep's jobs share theirs).
_datasets_checked: set[str] = set()


def dataset_of(cfg: DictConfig) -> DictConfig | None:
    """The job's data settings, resolved (`${paths.data_dir}` is the job's own), for `check_dataset`."""
    node = cfg.get("data")
    if not isinstance(node, DictConfig) or "_target_" not in node:
        return None
    return OmegaConf.create(OmegaConf.to_container(node, resolve=True))


def check_dataset(data: DictConfig | None) -> None:
    """The dataset itself, after every setting passed: fetched if needed, its folders listed and every image
    decoded, before any run folder is made (`DigitsDataModule.check_data`; decoded once and cached under
    `paths.data_dir`, so training then loads it in milliseconds). Once per data setting in a process."""
    import json

    if data is None:
        return
    key = json.dumps(OmegaConf.to_container(data), sort_keys=True, default=str)
    if key in _datasets_checked:
        return
    from digitlab.build import instantiate

    check = getattr(instantiate(data), "check_data", None)
    if check is not None:
        check()
    _datasets_checked.add(key)


def target_keys(cfg: DictConfig, prefix: str = "") -> list[str]:
    """The dotted keys of every `_target_` node of `cfg` (Hydra's own node and interpolations, such as the
    model's `optimizer: ${optimizer}`, left out: the node they point at is listed under its own key)."""
    keys = []
    for name in cfg:
        if prefix == "" and name == "hydra":
            continue
        if OmegaConf.is_interpolation(cfg, name):
            continue
        node = None if OmegaConf.is_missing(cfg, name) else cfg[name]
        if isinstance(node, DictConfig):
            key = f"{prefix}{name}"
            if "_target_" in node:
                keys.append(key)
            keys += target_keys(node, f"{key}.")
    return keys


# Targets that need a package digitlab installs only as an optional extra: target -> (module, extra).
EXTRAS = {"digitlab.loggers.mlflow_logger": ("mlflow", "mlflow")}


def _check_extras(cfg: DictConfig, keys: list[str], choices: dict[str, Any]) -> None:
    """A chosen option whose package is not installed: one paragraph naming the extra, before any folder
    (Lightning would raise ModuleNotFoundError when the run starts). `keys`: `target_keys(cfg)`."""
    for key in keys:
        needs = EXTRAS.get(OmegaConf.select(cfg, f"{key}._target_"))
        if needs is None:
            continue
        module, extra = needs
        try:
            importlib.import_module(module)
        except ImportError:
            group = key.split(".", 1)[0]
            raise ConfigError(
                f"{_chosen(group, cfg, choices)} needs the {module} package, which is not installed. Install "
                f"digitlab's optional extra: pip install 'digitlab[{extra}]' (or choose another {group}: "
                f"{', '.join(o for o in options(group) if module not in o)})."
            ) from None


# The optimizer and scheduler settings this process built and passed (a sweep's jobs share most of theirs:
# a grid of 64 lrs x 4 seeds builds 64 optimizers, not 256).
_optimizations_checked: set[str] = set()


def _check_optimization(cfg: DictConfig, choices: dict[str, Any]) -> None:
    """The optimizer and scheduler the model uses, built for real on a stand-in parameter, once per
    distinct resolved setting in a process."""
    from digitlab.build import instantiate
    from digitlab.optimizer import check_optimizer
    from digitlab.scheduler import check_scheduler

    model = cfg.get("model")
    if model is None or cfg.get("optimizer") is None or "optimizer" not in model:
        return
    optimizer_node = OmegaConf.to_container(cfg.optimizer, resolve=True)
    with_scheduler = cfg.get("scheduler") is not None and "scheduler" in model
    scheduler_node = OmegaConf.to_container(cfg.scheduler, resolve=True) if with_scheduler else None
    named = (_chosen("optimizer", cfg, choices), _chosen("scheduler", cfg, choices) if with_scheduler else "")
    seen = json.dumps([optimizer_node, scheduler_node, named], sort_keys=True, default=repr)
    if seen in _optimizations_checked:
        return
    optimizer = check_optimizer(
        instantiate(optimizer_node, _convert_="all"), _arguments(optimizer_node), named[0]
    )
    if scheduler_node is not None:
        check_scheduler(
            instantiate(scheduler_node, _convert_="all"), optimizer, _arguments(scheduler_node), named[1]
        )
    _optimizations_checked.add(seen)


def _arguments(node: dict[str, Any]) -> dict[str, Any]:
    """A resolved `_target_` node's settings (its keys less Hydra's `_target_`, `_partial_`, ...)."""
    return {key: value for key, value in node.items() if not str(key).startswith("_")}


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def _chosen(group: str, cfg: DictConfig, choices: dict[str, Any]) -> str:
    """How the user names a group's option: `loss=mnist_loss`, else by its target."""
    if choices.get(group):
        return f"{group}={choices[group]}"
    return f"{group}._target_={OmegaConf.select(cfg, f'{group}._target_')}"


def _target(cfg: DictConfig, key: str) -> Any:
    return _object(OmegaConf.select(cfg, f"{key}._target_"))


@functools.cache
def _object(path: str) -> Any:
    """What a `_target_` names, looked up once per process (a sweep checks hundreds of jobs)."""
    from hydra.utils import get_object

    return get_object(path)


@functools.cache
def _parameters(target: Any) -> Any:
    return inspect.signature(target).parameters


def _check_combinations(cfg: DictConfig, choices: dict[str, Any], overrides: Sequence[str]) -> None:
    model = cfg.get("model")
    if model is None:
        return
    typed = {o.lstrip("+~").split("=", 1)[0].split(".", 1)[0] for o in overrides}
    for part in MODEL_PARTS:
        if part not in model and cfg.get(part) is not None and part in typed:
            raise ConfigError(
                f"{_chosen(part, cfg, choices)} does not apply to {_chosen('model', cfg, choices)}: that model is "
                f"not trained by gradient descent and takes no {', '.join(MODEL_PARTS)}. Drop {part}=..., or "
                "choose a trained model (model=linear, mlp or resnet18)."
            )
    if "loss" in model and cfg.get("loss") is not None and cfg.get("data") is not None:
        classes = _target(cfg, "data").layout.class_names
        if getattr(_target(cfg, "loss"), "binary", False) and len(classes) != 2:
            raise ConfigError(
                f"{_chosen('loss', cfg, choices)} reads one logit per image, so it tells 2 classes apart; "
                f"{_chosen('data', cfg, choices)} has {len(classes)} ({', '.join(classes)}). Use "
                "loss=cross_entropy."
            )


def _check_arguments(cfg: DictConfig, key: str, choices: dict[str, Any]) -> None:
    """Every key of a `_target_` node is an argument of the target: an option never receives a key that
    belongs to another (SGD given Adam's `betas`), which would otherwise fail mid-run with a traceback."""
    node = OmegaConf.select(cfg, key)
    if not isinstance(node, DictConfig) or "_target_" not in node:
        return
    parameters = _parameters(_target(cfg, key))
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    for name in node:
        if not str(name).startswith("_") and name not in parameters:
            group = key.split(".", 1)[0]
            accepted = [p for p in parameters if p not in ("self", "params", "optimizer", "num_outputs")]
            raise ConfigError(
                f"{key}.{name} is not a setting of {node._target_} ({_chosen(group, cfg, choices)}): it "
                f"takes {', '.join(accepted)}. Remove {key}.{name} (an experiment may only set values every "
                "option of a group shares; a value that belongs to one option lives in that option's file)."
            )
