"""OmegaConf (bounded to 2.3.x): its interpolation parser without a cache, and its YAML string quoting.

`install_parse_cache`: each distinct interpolation string of a config parsed once per process, not once per
read. OmegaConf parses an interpolation (`${paths.output_dir}/checkpoints`) with its ANTLR grammar every time
the value is read or resolved, and keeps no parse tree. A sweep reads the same twenty-odd strings in every one
of its jobs: checking, resolving and instantiating a job of the chapter's linear experiment parsed 39 of them,
6 ms of its 25 (256 jobs: 1.5 s). A parse tree depends on the string alone and OmegaConf's visitors only read
it, so one tree serves every read; a string that does not parse raises again each time (an exception is not
cached). It wraps OmegaConf's `parse` where OmegaConf calls it: `omegaconf.base` and `omegaconf._utils`
import it by name. An OmegaConf whose modules no longer hold `grammar_parser.parse` under that name is left as
it is. Called from `config.location.register_resolvers`, never at import.
Upstream: https://github.com/omry/omegaconf/issues/622 (the parse cost); remove once OmegaConf caches parses.

`yaml_string_representer`: the representer OmegaConf's `to_yaml` quotes strings with ('1', 'true', ... stay
strings when read back), for `.hydra/` files dumped from plain containers with PyYAML's C dumper
(`sweeps.job_life.to_yaml`), which OmegaConf's `to_yaml` does not use.
Upstream: none filed that this project found; OmegaConf exports no dumper.
"""

from __future__ import annotations

import functools
from typing import Any

DISTINCT_STRINGS = 4096  # interpolation strings kept (a sweep's configs hold a few dozen)


def install_parse_cache() -> None:
    import omegaconf._utils
    import omegaconf.base
    from omegaconf import grammar_parser

    cached = _cached(grammar_parser.parse)
    for module in (omegaconf.base, omegaconf._utils):
        if getattr(module, "parse", None) is grammar_parser.parse:
            module.parse = cached


@functools.cache
def _cached(parse: Any) -> Any:
    """One cache per process around OmegaConf's `parse` (installing twice wraps it once)."""
    return functools.lru_cache(maxsize=DISTINCT_STRINGS)(parse)


def yaml_string_representer() -> Any:
    from omegaconf._utils import OmegaConfDumper

    return OmegaConfDumper.str_representer
