"""Each distinct interpolation string of a config parsed once per process, not once per read.

OmegaConf parses an interpolation (`${paths.output_dir}/checkpoints`) with its ANTLR grammar every time the
value is read or resolved, and keeps no parse tree (its parse cost is upstream's open omry/omegaconf#622). A
sweep reads the same twenty-odd strings in every one of its jobs: checking, resolving and instantiating a job
of the chapter's linear experiment parsed 39 of them, 6 ms of its 25 (256 jobs: 1.5 s). A parse tree depends
on the string alone and OmegaConf's visitors only read it, so one tree serves every read; a string that does
not parse raises again each time (an exception is not cached).

`install` (from `location.register_resolvers`, never at import) wraps OmegaConf's `parse` where OmegaConf calls
it: `omegaconf.base` and `omegaconf._utils` import it by name. An OmegaConf whose modules no longer hold
`grammar_parser.parse` under that name is left as it is. Remove this once OmegaConf caches its parses.
"""

from __future__ import annotations

import functools
from typing import Any

DISTINCT_STRINGS = 4096  # interpolation strings kept (a sweep's configs hold a few dozen)


def install() -> None:
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
