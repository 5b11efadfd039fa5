"""Start-up with and without scipy in the environment: `import lightning` (torchmetrics imports scipy.signal
when scipy is installed) and process start to the first training step of `digitlab-train`.

Optuna 2 (under hydra-optuna-sweeper) pulled scipy in; Optuna 5 and the rest of digitlab's dependencies do
not, so a fresh `make install` has none. To measure both in one environment this script needs scipy
installed (`.venv/bin/pip install scipy`) and hides it between rounds by renaming its package folders
(as if uninstalled), restoring them at the end. Rounds alternate, so both variants see the same machine.

    .venv/bin/python experiments/scipy_startup/run.py [rounds=5]   -> results.md beside this file
"""

from __future__ import annotations

import importlib.metadata as metadata
import json
import statistics
import subprocess
import sys
import tempfile
from contextlib import contextmanager, nullcontext
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))  # the bench's probes and their timing

from bench import PROBES, PY, first_step_s  # noqa: E402


@contextmanager
def scipy_hidden():
    dist = metadata.distribution("scipy")
    folders = [Path(dist.locate_file("scipy")), Path(dist._path)]  # the package and its .dist-info
    for folder in folders:
        folder.rename(folder.with_name(folder.name + ".hidden"))
    try:
        yield
    finally:
        for folder in folders:
            folder.with_name(folder.name + ".hidden").rename(folder)


def import_lightning_s() -> float:
    out = subprocess.run(
        [PY, str(PROBES / "import_age.py"), "lightning"], capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def scipy_imported() -> bool:
    code = "import sys, lightning; print('scipy' in sys.modules)"
    return (
        subprocess.run([PY, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "True"
    )


def main(rounds: int) -> None:
    results: dict[str, dict[str, list[float]]] = {
        v: {"import": [], "first_step": []} for v in ("with", "without")
    }
    loaded = {}
    for _ in range(rounds):
        for variant in ("with", "without"):
            hidden = scipy_hidden() if variant == "without" else nullcontext()
            with tempfile.TemporaryDirectory() as tmp, hidden:
                loaded[variant] = scipy_imported()
                results[variant]["import"].append(import_lightning_s())
                results[variant]["first_step"].append(first_step_s(Path(tmp)))
    med = {v: {k: statistics.median(x) for k, x in r.items()} for v, r in results.items()}
    lines = [
        f"Medians of {rounds} alternating rounds (`{' '.join(['python', *sys.argv])}`):",
        "",
        "| scipy in the environment | scipy imported by `import lightning` | `import lightning` (s) | process start to first training step (s) |",
        "|---|---|---|---|",
    ]
    for variant in ("with", "without"):
        lines.append(
            f"| {variant} | {loaded[variant]} | {med[variant]['import']:.2f} | {med[variant]['first_step']:.2f} |"
        )
    saved = {k: med["with"][k] - med["without"][k] for k in ("import", "first_step")}
    ratio = {k: med["with"][k] / med["without"][k] for k in ("import", "first_step")}
    lines += [
        "",
        f"Without scipy: `import lightning` {saved['import']:.2f} s sooner ({ratio['import']:.2f} x as fast), the first "
        f"training step {saved['first_step']:.2f} s sooner ({ratio['first_step']:.2f} x).",
        "",
        "All rounds (s): " + json.dumps(results),
    ]
    (HERE / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
