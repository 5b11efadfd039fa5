"""Importing digitlab changes nothing process-wide: in a fresh interpreter, importing every module of the
package leaves warnings filters, the root logger's handlers, Lightning's handlers, matplotlib's backend and
OmegaConf's resolvers and parser as they were. The entry points apply the process policy themselves."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO

PROBE = r"""
import importlib, json, logging, pkgutil, sys, warnings
import lightning, matplotlib, omegaconf, torch  # the state before is taken with the heavy dependencies loaded
import omegaconf.base, omegaconf.grammar_parser

def state():
    return {
        "warnings": [repr(f) for f in warnings.filters],
        "root handlers": [repr(h) for h in logging.getLogger().handlers],
        "lightning handlers": [repr(h) for h in logging.getLogger("lightning").handlers],
        "matplotlib backend": repr(dict.get(matplotlib.rcParams, "backend")),
        "resolvers": [n for n in ("cwd", "first_set") if omegaconf.OmegaConf.has_resolver(n)],
        "omegaconf parse": omegaconf.base.parse is omegaconf.grammar_parser.parse,
    }

before = state()
import digitlab
names = [m.name for m in pkgutil.walk_packages(digitlab.__path__, "digitlab.")]
for name in names:
    importlib.import_module(name)
print(json.dumps({"modules": names, "before": before, "after": state()}))
"""


def test_importing_every_module_changes_nothing_process_wide():
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=REPO, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(result["modules"]) > 30 and "digitlab.cli.train" in result["modules"]
    assert result["after"] == result["before"]


def test_no_plugin_or_library_module_imports_an_entry_point():
    """Entry points sit on top: Hydra plugins and the library run jobs through `digitlab.job`, never through
    `digitlab.cli`."""
    import ast

    offenders = []
    for path in [*(REPO / "src" / "hydra_plugins").rglob("*.py"), *(REPO / "src" / "digitlab").rglob("*.py")]:
        if "cli" in path.relative_to(REPO / "src").parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            offenders += [f"{path.name}: {name}" for name in names if name.startswith("digitlab.cli")]
    assert offenders == []


LOG_ORDER_PROBE = r"""
import io, logging
import lightning.pytorch  # first: the root logger has no handler yet, so Lightning gives itself one
from digitlab.process import apply_process_policy

seen = io.StringIO()
logging.basicConfig(stream=seen, level=logging.INFO, format="%(name)s: %(message)s")  # as Hydra sets it up
apply_process_policy()
logging.getLogger("lightning.pytorch.trainer").info("GPU available: probe")
print(seen.getvalue().count("GPU available: probe"))
"""


def test_lightning_imported_before_the_root_logger_still_logs_through_it():
    """Lightning's console handlers, made when it is imported before the root logger has any, would print
    its lines past the root's (a quiet sweep's console, a job's train.log): the process policy removes them."""
    proc = subprocess.run(
        [sys.executable, "-c", LOG_ORDER_PROBE], capture_output=True, text=True, cwd=REPO, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "1" and "GPU available: probe" not in proc.stderr
