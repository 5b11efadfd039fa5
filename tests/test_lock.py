"""The environment is the lock's: `make install` installs `requirements.lock`, so a fresh clone on any machine
gets the exact versions the tests passed with (torch's own build apart: TORCH_SPEC in the Makefile)."""

from __future__ import annotations

import re
from importlib.metadata import distributions
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
TORCH_BUILD = re.compile(r"^(torch|torchvision|triton|nvidia-[a-z0-9-]+|cuda-[a-z0-9-]+)$")


def locked() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


def test_every_installed_package_is_at_its_locked_version():
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in distributions()}
    pins = locked()
    differ = {
        name: (version, installed.get(name))
        for name, version in pins.items()
        if installed.get(name) != version
    }
    assert not differ, f"locked vs installed (run `make install`): {differ}"
    # Nothing installed beside the lock but digitlab itself, pip's own tools and torch's build.
    unlocked = {
        name
        for name in installed
        if name not in pins
        and not TORCH_BUILD.match(name)
        and name not in ("digitlab", "pip", "setuptools", "wheel")
    }
    assert not unlocked, f"installed but not in requirements.lock (run `make lock`): {sorted(unlocked)}"


def test_the_lock_satisfies_the_declared_ranges():
    """pyproject.toml keeps the ranges; the lock is one point inside them."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    installed_extras = ("dev", "postgres", "notebook")  # what `make install` installs (the Makefile)
    assert f"-e '.[{','.join(installed_extras)}]'" in (ROOT / "Makefile").read_text()
    declared = [*project["dependencies"], *(r for extra in installed_extras for r in extras[extra])]
    pins = locked()
    for text in declared:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        if TORCH_BUILD.match(name):
            continue
        assert name in pins, f"{requirement.name} is declared but not locked"
        assert requirement.specifier.contains(pins[name], prereleases=True), (text, pins[name])
