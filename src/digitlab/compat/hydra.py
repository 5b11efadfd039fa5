"""Hydra (hydra-core bounded to 1.3.x): the parts of its core digitlab builds on that Hydra keeps under
`hydra._internal`, its marker for "not public API" (https://github.com/hydra-ecosystem/hydra/issues/78).

- `BasicSweeper`: Hydra's grid sweeper, which digitlab's checked sweeper extends (its argument splitting,
  batching and `hydra.sweeper.params`) rather than copies. Hydra's plugin API makes a sweeper public, not
  this one. Upstream: none filed that this project found.
- `args_parser`: the command line as Hydra will read it (`--config-name`, `--help`, the overrides), so the
  overrides are checked before Hydra composes them.
  Upstream: https://github.com/hydra-ecosystem/hydra/issues/1578 (a parser for users, declined).
- `apply_overrides`, `overrides_dirname`: Hydra's own setter of plain `key=value` overrides (its checks, its
  errors) and its `hydra.job.override_dirname`, for composing a sweep's jobs from one template
  (`sweeps.compose`). Upstream: none filed that this project found.
- `sweeper_params`: the overrides `hydra.sweeper.params` holds, as BasicSweeper reads them. Upstream: none
  filed that this project found.
- `job_error`: the error a failed job raised. `JobReturn.return_value` raises it, after writing "Error
  executing job with overrides" to stderr, which a sweep that reports its failures itself must not print.
  Upstream: none filed that this project found.
- `LAUNCHER_LOGGERS`: the loggers of Hydra's basic and joblib launchers, which log each job's overrides as
  it starts (a quiet sweep prints one line per job at its end instead, `console.quiet_launchers`).
"""

from __future__ import annotations

from typing import Any

from hydra.core.utils import JobReturn, JobStatus

LAUNCHER_LOGGERS = (
    "hydra._internal.core_plugins.basic_launcher",
    "hydra_plugins.hydra_joblib_launcher._core",
)


def args_parser() -> Any:
    from hydra._internal.utils import get_args_parser

    return get_args_parser()


def apply_overrides(overrides: list[Any], cfg: Any) -> None:
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    ConfigLoaderImpl._apply_overrides_to_config(overrides, cfg)


def overrides_dirname(overrides: list[Any], exclude_keys: list[str], item_sep: str, kv_sep: str) -> str:
    from hydra._internal.config_loader_impl import get_overrides_dirname

    return get_overrides_dirname(
        overrides=overrides, exclude_keys=exclude_keys, item_sep=item_sep, kv_sep=kv_sep
    )


def __getattr__(name: str) -> Any:
    """`BasicSweeper`, imported only when asked for: Hydra's plugin scan executes its core plugins' modules
    again, and a subclass must extend the class that scan made (else `super()` in its methods fails)."""
    if name == "BasicSweeper":
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

        return BasicSweeper
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def sweeper_params(sweeper: Any) -> list[str]:
    return sweeper._parse_config()


def job_error(ret: JobReturn) -> BaseException | None:
    """The error a failed job raised; None for a job that did not fail."""
    return ret._return_value if ret.status == JobStatus.FAILED else None
