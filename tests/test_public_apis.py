"""src/ reaches the libraries it builds on through their public APIs only: no private attribute of Lightning,
Hydra, OmegaConf, Optuna, TensorBoard or submitit is read, written or patched, no private module of theirs
imported or named, outside `digitlab/compat/` (one module per library, each workaround naming its upstream
issue, the library's version bounded in pyproject.toml)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
COMPAT = SRC / "digitlab" / "compat"
LIBRARIES = ("lightning", "pytorch_lightning", "hydra", "omegaconf", "optuna", "tensorboard", "submitit")
OWNERS = re.compile(rf"^({'|'.join(LIBRARIES)}|hydra_plugins\.hydra_\w+|torch\.utils\.tensorboard)(\.|$)")


def private_module(dotted: str) -> bool:
    """`hydra._internal.utils`, `optuna.storages._rdb`: a dotted name of those libraries with a private part."""
    return bool(OWNERS.match(dotted)) and any(_private(part) for part in dotted.split("."))


def _private(name: str) -> bool:
    """`_x` but not `__x__` (Python's) nor `_x_` (Hydra's `_target_`, `_partial_`: public keys)."""
    return name.startswith("_") and not name.endswith("_")


def _names_a_private_module(value: object) -> bool:
    """A string such as a logger's name, `"hydra._internal.core_plugins.basic_launcher"`."""
    return isinstance(value, str) and bool(re.fullmatch(r"[\w.]+", value)) and private_module(value)


def _sources() -> list[Path]:
    return [p for p in sorted(SRC.rglob("*.py")) if COMPAT not in p.parents]


def _own_private_names() -> set[str]:
    """Private names src/ defines itself (functions, methods, attributes it assigns, parameters): reading
    one of those on another of its own objects is not a library's."""
    names = set()
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
    return {name for name in names if _private(name)}


def private_uses(path: Path, own: set[str]) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        where = f"{path.relative_to(SRC) if SRC in path.parents else path.name}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if private_module(node.module):
                found.append(f"{where}: from {node.module} import ...")
            elif node.module.split(".")[0] in LIBRARIES:
                found += [f"{where}: {node.module}.{a.name}" for a in node.names if _private(a.name)]
        elif isinstance(node, ast.Import):
            found += [f"{where}: import {a.name}" for a in node.names if private_module(a.name)]
        elif isinstance(node, ast.Attribute) and _private(node.attr) and node.attr not in own:
            found.append(f"{where}: .{node.attr}")
        elif isinstance(node, ast.Constant) and _names_a_private_module(node.value):
            found.append(f"{where}: {node.value!r}")
    return found


def test_src_touches_no_private_attribute_of_its_libraries():
    own = _own_private_names()
    found = [use for path in _sources() for use in private_uses(path, own)]
    assert not found, "private APIs used outside digitlab/compat/:\n" + "\n".join(found)


def test_the_check_finds_what_it_is_for(tmp_path):
    """The check itself can fail: each kind of private use it is for is found."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from hydra._internal.utils import get_args_parser\n"
        "import optuna.storages._rdb.models\n"
        "from omegaconf import _utils\n"
        "connector = trainer._signal_connector\n"
        "checkpointer._save_checkpoint = print\n"
        "LOGGER = 'hydra._internal.core_plugins.basic_launcher'\n"
        "key = cfg._target_\n"  # Hydra's public key: not found
        "node = OmegaConf.select(cfg, 'hydra.launcher._target_')\n"
        "mine = self._own\n"
    )
    found = private_uses(sample, own={"_own"})
    assert [use.split(": ", 1)[1] for use in found] == [
        "from hydra._internal.utils import ...",
        "import optuna.storages._rdb.models",
        "omegaconf._utils",
        "._signal_connector",
        "._save_checkpoint",
        "'hydra._internal.core_plugins.basic_launcher'",
    ]


def test_each_workaround_names_its_upstream_issue_and_its_library_is_bounded():
    pyproject = (SRC.parent / "pyproject.toml").read_text()
    modules = sorted(p for p in COMPAT.glob("*.py") if p.name != "__init__.py")
    assert modules, "digitlab/compat/ holds the workarounds"
    for module in modules:
        text = module.read_text()
        said = re.findall(r"Upstream: (\S+(?: \S+){0,5})", " ".join(text.split()))
        assert said, f"{module.name}: no `Upstream:` line"
        for line in said:
            issue = re.search(r"github\.com/[\w.-]+/[\w.-]+/(issues|pull)/\d+", line)
            assert issue or line.startswith("none filed that this project found"), f"{module.name}: {line}"
        distribution = {"lightning": "lightning", "hydra": "hydra-core", "tensorboard": "tensorboard"}.get(
            module.stem, module.stem
        )
        assert re.search(rf'"{distribution}[<>=!~][^"]*<', pyproject), f"{distribution} has no upper bound"
