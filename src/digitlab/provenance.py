"""What produced a run (`provenance.json` in its folder): the git commit of digitlab's code and, when the tree
had uncommitted changes, their diff (`code.diff` beside it); the versions of the libraries that decide the
numbers; the command line; the host. Asked once per process: a sweep's jobs share it.
"""

from __future__ import annotations

import functools
import hashlib
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("digitlab", "torch", "lightning", "hydra-core", "optuna", "torchmetrics", "numpy")


def collect() -> dict[str, Any]:
    """The provenance of a run started now by this process."""
    commit, diff = _code()
    return {
        "code": {"commit": commit, "dirty": bool(diff), "diff_sha256": _sha(diff) if diff else None},
        "versions": _versions(),
        "command": [Path(sys.argv[0]).name, *map(hide_passwords, sys.argv[1:])],
        "python": sys.version.split()[0],
        "host": socket.gethostname(),
    }


def diff() -> str:
    """The uncommitted changes of digitlab's code ("" for a clean tree or an install without git)."""
    return _code()[1]


def short(info: dict[str, Any] | None) -> str:
    """A run's code as one word for a table: the commit's first 8 characters, `+dirty` when it had changes."""
    code = (info or {}).get("code") or {}
    if not code.get("commit"):
        return "-"
    return code["commit"][:8] + ("+" + code["diff_sha256"][:6] if code.get("dirty") else "")


@functools.cache
def _code() -> tuple[str | None, str]:
    source = Path(__file__).resolve().parent
    try:
        top = _git(source, "rev-parse", "--show-toplevel").strip()
        commit = _git(source, "rev-parse", "HEAD").strip()
        changes = _git(Path(top), "diff", "HEAD", "--", "src", "conf", "pyproject.toml")
    except (OSError, subprocess.SubprocessError):
        return None, ""  # no git, or not a checkout (an installed wheel)
    return commit or None, changes


def _git(where: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(where), *args], capture_output=True, text=True, check=True, timeout=20
    ).stdout


@functools.cache
def _versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def hide_passwords(text: str) -> str:
    """`scheme://user:secret@host` -> `scheme://user:***@host`: a storage URL typed with its password."""
    import re

    return re.sub(r"(://[^/:@\s]+:)[^@\s]+@", r"\1***@", text)
