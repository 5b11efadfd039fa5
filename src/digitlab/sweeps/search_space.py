"""The search-space language of hydra-optuna-sweeper, so its files (and lightning-hydra-template's) work
unchanged: each entry of `hydra.sweeper.params`, and each sweep typed on the command line, is a Hydra
override whose value becomes an Optuna distribution:

    interval(0.01, 10)            FloatDistribution(0.01, 10)      (Hydra reads interval ends as floats)
    tag(log, interval(0.01, 10))  the same, log=True
    tag(int, interval(1, 4))      IntDistribution(1, 4); tag(int, log, ...) on a log scale
    choice(16, 32, 64) / 16,32,64 CategoricalDistribution
    range(1, 5) / range(0, 1, step=0.25)   Int/FloatDistribution with that step, the stop excluded as in
                                  Hydra's own sweep (hydra-optuna-sweeper passed the stop through inclusive)
    shuffle(...)                  categorical over the values
    anything else (lr=0.1)        a fixed value, passed to every trial as typed

Parsing happens before any trial, and a string the parser refuses is one paragraph naming it.
"""

from __future__ import annotations

import decimal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep, Override, RangeSweep, Transformer
from hydra.errors import HydraException
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from digitlab.config.checks import check_sweep_lists
from digitlab.errors import ConfigError

FORMS = (
    "interval(low, high), tag(log, interval(low, high)), tag(int, interval(low, high)), choice(a, b, ...), "
    "a,b,... or range(start, stop[, step])"
)


@dataclass(frozen=True)
class SearchSpace:
    distributions: dict[str, BaseDistribution]  # key -> what Optuna samples
    fixed: list[str]  # overrides every trial gets as typed (`hparams_search=mlp`, `trainer.max_epochs=5`)

    def sample(self, trial: optuna.Trial) -> None:
        """Draw every parameter for `trial` (through the public suggest API; an enqueued trial gets its own)."""
        for key, dist in self.distributions.items():
            if isinstance(dist, CategoricalDistribution):
                trial.suggest_categorical(key, dist.choices)
            elif isinstance(dist, IntDistribution):
                trial.suggest_int(key, dist.low, dist.high, step=dist.step, log=dist.log)
            else:
                trial.suggest_float(key, dist.low, dist.high, step=dist.step, log=dist.log)

    def overrides(self, params: Mapping[str, object]) -> list[str]:
        """One job's command line: the sampled values, then the fixed overrides."""
        return [f"{key}={_format(value)}" for key, value in params.items()] + list(self.fixed)

    def corners(self) -> list[list[str]]:
        """Jobs that between them take every value a trial can be given that matters to a check: each choice
        and both ends of each interval, one parameter at a time (the others at their first value)."""
        values = {key: _ends(dist) for key, dist in self.distributions.items()}
        first = {key: ends[0] for key, ends in values.items()}
        jobs: dict[tuple[str, ...], None] = {}
        for key, ends in values.items():
            for value in ends:
                jobs[tuple(self.overrides({**first, key: value}))] = None
        return [list(job) for job in jobs] or [list(self.fixed)]

    def grid(self) -> dict[str, list]:
        """Every value of every parameter, for GridSampler; refuses continuous intervals."""
        grid = {}
        for key, dist in self.distributions.items():
            if isinstance(dist, CategoricalDistribution):
                grid[key] = list(dist.choices)
            elif (
                isinstance(dist, IntDistribution | FloatDistribution)
                and dist.step is not None
                and not dist.log
            ):
                count = round((dist.high - dist.low) / dist.step)
                grid[key] = [dist.low + i * dist.step for i in range(count + 1)]
            else:
                raise ConfigError(
                    f"hydra.sweeper.params.{key} is {dist.__class__.__name__}({dist.low}, {dist.high}): the grid "
                    "sampler (hydra/sweeper/sampler=grid) needs finite values; use choice(...) or range(...)."
                )
        return grid


def parse_search_space(params: Mapping[str, str] | None, arguments: Sequence[str]) -> SearchSpace:
    """`hydra.sweeper.params` plus the command line's overrides (the command line wins for a key in both)."""
    lines = [f"{key}={value}" for key, value in (params or {}).items()]
    parser = OverridesParser.create()
    distributions: dict[str, BaseDistribution] = {}
    fixed: dict[str, str] = {}
    for line in [*lines, *arguments]:
        try:
            (override,) = parser.parse_overrides([line])
        except HydraException as err:
            raise ConfigError(
                f"{line!r} is not a search space Hydra can read ({str(err).splitlines()[0]}). Each entry of "
                f"hydra.sweeper.params (and each sweep on the command line) is key=one of: {FORMS}."
            ) from None
        key = override.get_key_element()
        distributions.pop(key, None)
        fixed.pop(key, None)
        if override.is_sweep_override():
            check_sweep_lists([override])
            distributions[key] = _distribution(override, line)
        else:
            fixed[key] = line
    return SearchSpace(distributions, list(fixed.values()))


def _distribution(override: Override, line: str) -> BaseDistribution:
    value = override.value()
    if override.is_interval_sweep():
        assert isinstance(value, IntervalSweep)
        log = "log" in value.tags
        low, high = value.start, value.end
        if low is None or high is None or not low < high or (log and low <= 0):
            raise ConfigError(
                f"{line!r}: an interval needs low < high{' and low > 0 on a log scale' if log else ''}."
            )
        if "int" in value.tags:
            return IntDistribution(int(low), int(high), log=log)
        return FloatDistribution(float(low), float(high), log=log)
    if override.is_range_sweep() and not value.shuffle:
        assert isinstance(value, RangeSweep)
        values = list(override.sweep_iterator(transformer=Transformer.encode))
        if not values:
            raise ConfigError(f"{line!r} is an empty range: Hydra's range(start, stop, step) excludes stop.")
        start, stop, step = value.start, value.stop, value.step
        if all(isinstance(v, int) for v in (start, stop, step)):
            return IntDistribution(start, start + (len(values) - 1) * step, step=step)
        last = float(decimal.Decimal(str(start)) + (len(values) - 1) * decimal.Decimal(str(step)))
        return FloatDistribution(float(start), last, step=float(step))
    # choice(...), a,b,c, shuffle(...): every value as Hydra would pass it on a command line
    choices = tuple(override.sweep_iterator(transformer=Transformer.encode))
    return CategoricalDistribution(choices)


def _ends(dist: BaseDistribution) -> list:
    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    return [dist.low, dist.high]  # type: ignore[attr-defined]


def _format(value: object) -> str:
    """A sampled value as Hydra reads it back (strings quoted where needed, None as null)."""
    return Transformer.str(value)
