"""The `key=value` command lines of digitlab-eval and digitlab-predict (Hydra's dotted overrides, no Hydra)."""

from __future__ import annotations

from pathlib import Path


def parse_args(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """`key=value` arguments: `ckpt_path` apart, the rest as config overrides; anything else is positional.
    A path that exists is a path whatever its name holds (`scans/digit=3.png`)."""
    settings, positional = {}, []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key and not key.startswith("-") and not Path(arg).exists():
            settings[key] = value
        else:
            positional.append(arg)
    return settings, positional


def wants_help(argv: list[str]) -> bool:
    return any(arg in ("-h", "--help") for arg in argv)
