"""digitlab's overhead, measured against a bare PyTorch loop in the same run: `make bench`.

Prints the figures and writes them to benchmarks/results.json with the machine and versions; `render.py`
turns that into benchmarks/RESULTS.md:
- linear (20 epochs), MLP (40), resnet18 (1): time per epoch (training + validation) and whole-process wall
  time of `digitlab-train`, next to `bare_loop.py` (same data in memory, model, batch, optimizer); accuracy;
- start-up: composing the config (`--cfg job`), and process start to the first training step;
- data: loading the cached dataset, and the share of an epoch spent fetching batches;
- sweeps: an 8-job multirun against the sum of its jobs' training time; joblib with 2 jobs against
  sequential, for linear and MLP sweeps;
- stacked sweeps: the 24-job lr x seed sweeps of linear (20 epochs) and MLP (10 epochs), command to compare
  table, basic launcher against `hydra/launcher=stacked`, with peak memory and the largest metric difference;
- a wide stacked sweep: 256 linear trials (64 lr x 4 seeds, 20 epochs), the whole command, against a
  hand-written stacked loop over the same trials (`bare_stack.py`), with where the command's time goes;
- the shipped search (`hparams_search=mlp`, whole command) against `bare_search.py`, the Optuna ask/tell loop
  over bare PyTorch that a researcher writes instead: wall time, best value, epochs trained; and Ray Tune
  (`ray_search.py`) when DIGITLAB_BENCH_RAY_PYTHON names a Python that has it;
- peak memory (max RSS) of each training process.
- the import floor: `import lightning` against `import torch`, what any Lightning program pays at start.
Timings on a shared machine are noisy: the models alternate digitlab and bare runs REPEATS times and report
medians, the import floor and start-up figures are medians of 3, the sweeps are single runs.
"""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import render

ROOT = Path(__file__).resolve().parents[1]
RESULTS_JSON = ROOT / "benchmarks" / "results.json"
PY = sys.executable
QUIET = ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]
EXPERIMENTS = {"linear": "fastbook_linear", "mlp": "fastbook_mlp", "resnet18": "fastbook_resnet18"}
REPEATS = {"linear": 3, "mlp": 3, "resnet18": 2}  # medians of alternating runs


def timed(cmd: list[str], cwd: Path = ROOT) -> tuple[float, str, int]:
    """(wall seconds, stdout, max RSS in MB) of one process."""
    with tempfile.NamedTemporaryFile("r") as rss:
        start = time.perf_counter()
        proc = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", rss.name, *cmd], cwd=cwd, capture_output=True, text=True
        )
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
        return wall, proc.stdout, int(rss.read().split()[-1]) // 1024


def multirun(sweep: Path, *args: str) -> tuple[float, str, int]:
    """`digitlab-train -m <args>` into `sweep`, quietly: (wall seconds, stdout, max RSS in MB)."""
    return timed([PY, "-m", "digitlab.cli.train", "-m", *args, f"hydra.sweep.dir={sweep}", *QUIET])


def train(args: list[str], tmp: Path, name: str) -> tuple[float, dict, int]:
    run_dir = tmp / name
    wall, _, rss = timed([PY, "-m", "digitlab.cli.train", *args, f"hydra.run.dir={run_dir}", *QUIET])
    return wall, json.loads((run_dir / "metrics.json").read_text()), rss


def models(tmp: Path, data_dir: Path) -> list[dict]:
    rows = []
    for name, experiment in EXPERIMENTS.items():
        ours, bare = [], []
        for repeat in range(REPEATS[name]):  # alternated, so a slow spell of the machine hits both
            wall, metrics, rss = train([f"experiment={experiment}"], tmp, f"{name}{repeat}")
            ours.append((wall, metrics, rss))
            bare_wall, out, bare_rss = timed(
                [PY, str(ROOT / "benchmarks" / "bare_loop.py"), name, str(data_dir)]
            )
            bare.append((bare_wall, json.loads(out.strip().splitlines()[-1]), bare_rss))
        wall, metrics = statistics.median(w for w, _, _ in ours), ours[-1][1]
        epoch_s = statistics.median(m["epoch_time_s"] for _, m, _ in ours)
        bare_wall = statistics.median(w for w, _, _ in bare)
        bare_epoch_s = statistics.median(b["epoch_s"] for _, b, _ in bare)
        rows.append(
            {
                "model": name,
                "repeats": REPEATS[name],
                "epochs": metrics["epochs"],
                "epoch_s": epoch_s,
                "bare_epoch_s": bare_epoch_s,
                "epoch_ratio": epoch_s / bare_epoch_s,
                "process_s": wall,
                "bare_process_s": bare_wall,
                "process_extra_s": wall - bare_wall,
                "acc": metrics["val/acc"],
                "bare_acc": bare[-1][1]["val_acc"],
                "rss_mb": max(r for _, _, r in ours),
                "bare_rss_mb": max(r for _, _, r in bare),
            }
        )
        print(rows[-1], flush=True)
    return rows


PROBES = ROOT / "benchmarks" / "probes"


def import_floor() -> dict:
    """Seconds from process start until `import torch`, and `import lightning` (which imports torchmetrics,
    torchvision and torch._dynamo; scipy.signal too where scipy is installed), have returned; median of 3 each. Measured inside the
    process (its age from /proc), so the interpreter's exit is not counted."""
    result = {}
    for module in ("torch", "lightning"):
        probe = [PY, str(PROBES / "import_age.py"), module]
        ages = [float(timed(probe)[1].strip().splitlines()[-1]) for _ in range(3)]
        result[f"{module}_s"] = statistics.median(ages)
    result["floor_s"] = result["lightning_s"] - result["torch_s"]
    print("imports", result, flush=True)
    return result


def startup(tmp: Path) -> dict:
    """Composing the config (`--cfg job`, whole process) and process start to the first training step;
    median of 3 each."""
    compose = statistics.median(timed([PY, "-m", "digitlab.cli.train", "--cfg", "job"])[0] for _ in range(3))
    first_steps = [first_step_s(tmp / f"first_step{repeat}") for repeat in range(3)]
    return {"compose_s": compose, "first_step_s": statistics.median(first_steps)}


def first_step_s(folder: Path) -> float:
    """Process start to the first training step of `digitlab-train trainer.max_epochs=1` (linear), run in
    `folder`, measured inside the process by a callback added from the command line."""
    marker = folder / "first_step.json"
    timer = "+callbacks.first_step={_target_:first_step.FirstStepTimer,path:" + str(marker) + "}"
    probe = [PY, str(PROBES / "train_first_step.py"), "trainer.max_epochs=1", timer]
    timed([*probe, f"hydra.run.dir={folder / 'run'}", f"paths.log_dir={folder / 'logs'}", *QUIET])
    return json.loads(marker.read_text())["first_step_s"]


def data(tmp: Path, data_dir: Path, linear_epoch_s: float) -> dict:
    _, out, _ = timed([PY, str(PROBES / "fetch_batches.py"), str(data_dir)])
    result = json.loads(out.strip().splitlines()[-1])
    result["fetch_share"] = result["fetch_epoch_s"] / linear_epoch_s
    return result


def sweeps(tmp: Path) -> dict:
    result = {}
    lrs = "optimizer.lr=0.05,0.1,0.2,0.5,1.0,2.0,5.0,10.0"
    for name, args in {
        "linear": ["experiment=fastbook_linear", lrs],
        "mlp": ["experiment=fastbook_mlp", "trainer.max_epochs=10", lrs],
    }.items():
        walls = {}
        for launcher in ("basic", "joblib"):
            sweep = tmp / f"sweep_{name}_{launcher}"
            extra = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"] if launcher == "joblib" else []
            walls[launcher], _, _ = multirun(sweep, *args, *extra)
            if launcher == "basic":
                fits = [json.loads(p.read_text())["wall_time_s"] for p in sweep.glob("*/metrics.json")]
                result[f"{name}_jobs"] = len(fits)
                result[f"{name}_sum_fit_s"] = sum(fits)
        result[f"{name}_sequential_s"] = walls["basic"]
        result[f"{name}_joblib2_s"] = walls["joblib"]
        result[f"{name}_sequential_over_fits"] = walls["basic"] / result[f"{name}_sum_fit_s"]
        result[f"{name}_joblib_speedup"] = walls["basic"] / walls["joblib"]
        print(name, {k: v for k, v in result.items() if k.startswith(name)}, flush=True)
    return result


STACKED_SWEEP = ["optimizer.lr=0.03,0.1,0.3,1,3,10", "seed=0,1,2,3"]


def stacked(tmp: Path) -> dict:
    """The 24-job lr x seed sweeps, basic launcher then stacked, each the whole command to its compare table."""
    result = {}
    for name, args in {
        "linear": ["experiment=fastbook_linear"],
        "mlp": ["experiment=fastbook_mlp", "trainer.max_epochs=10"],
    }.items():
        metrics = {}
        for launcher in ("basic", "stacked"):
            sweep = tmp / f"stacked_{name}_{launcher}"
            wall, out, rss = multirun(sweep, *args, *STACKED_SWEEP, f"hydra/launcher={launcher}")
            if launcher == "stacked":  # where its time goes, from the launcher's own log lines
                setup = float(re.search(r"job folders set up in ([\d.]+) s", out).group(1))
                fit = float(re.search(r"stacked trials trained and written in ([\d.]+) s", out).group(1))
                result[f"{name}_stacked_setup_s"] = setup
                result[f"{name}_stacked_fit_write_s"] = fit
                result[f"{name}_stacked_rest_s"] = wall - setup - fit
            metrics[launcher] = {
                p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/metrics.json")
            }
            result[f"{name}_{launcher}_s"] = wall
            result[f"{name}_{launcher}_rss_mb"] = rss
        stack = metrics["stacked"]
        result[f"{name}_jobs"] = len(stack)
        result[f"{name}_stacked_fit_s"] = max(m["wall_time_s"] for m in stack.values())
        result[f"{name}_basic_sum_fit_s"] = sum(m["wall_time_s"] for m in metrics["basic"].values())
        result[f"{name}_speedup"] = result[f"{name}_basic_s"] / result[f"{name}_stacked_s"]
        for key in ("val/loss", "val/acc"):
            result[f"{name}_max_diff_{key.replace('/', '_')}"] = max(
                abs(m[key] - metrics["basic"][run][key]) for run, m in stack.items()
            )
        by_lr: dict[str, float] = {}
        for run, m in stack.items():
            lr = re.search(r"optimizer\.lr=([^,]+)", run).group(1)
            by_lr[lr] = max(by_lr.get(lr, 0.0), abs(m["val/loss"] - metrics["basic"][run]["val/loss"]))
        result[f"{name}_val_loss_diff_by_lr"] = by_lr
        print(name, {k: v for k, v in result.items() if k.startswith(name)}, flush=True)
    # The hand-written stacked loop over the same 24 linear trials, in the same run (bare_stack.py).
    lrs, seeds = (arg.split("=", 1)[1] for arg in STACKED_SWEEP)
    bare_wall, bare_out, _ = timed(
        [PY, str(ROOT / "benchmarks" / "bare_stack.py"), str(ROOT / "data"), "20", lrs, seeds]
    )
    result["linear_bare_stack_s"] = bare_wall
    result["linear_bare_stack_fit_s"] = json.loads(bare_out.strip().splitlines()[-1])["fit_s"]
    result["linear_vs_bare_stack"] = result["linear_stacked_s"] / bare_wall
    print("bare stack", bare_wall, flush=True)
    return result


WIDE_LRS = [f"{0.01 * 1000 ** (i / 63):.4g}" for i in range(64)]  # 64 learning rates, 0.01 to 10
WIDE_SEEDS = "0,1,2,3"


def wide_stack(tmp: Path) -> dict:
    """256 stacked linear trials (64 lr x 4 seeds, 20 epochs), the whole command to its compare table,
    against `bare_stack.py`, a hand-written stacked loop over the same trials, in the same run."""
    sweep = tmp / "wide_stack"
    wall, out, rss = multirun(
        sweep,
        "hydra/launcher=stacked",
        "hydra.launcher.max_stack=256",
        "experiment=fastbook_linear",
        f"optimizer.lr={','.join(WIDE_LRS)}",
        f"seed={WIDE_SEEDS}",
    )
    prepare = float(re.search(r"jobs composed, checked and grouped in ([\d.]+) s", out).group(1))
    setup = float(re.search(r"job folders set up in ([\d.]+) s", out).group(1))
    fit = float(re.search(r"stacked trials trained and written in ([\d.]+) s", out).group(1))
    ending = float(re.search(r"trials' pictures and own checkpoints written in ([\d.]+) s", out).group(1))
    checked = re.search(r"checked (\d+) jobs in ([\d.]+) s", out)
    trials = [json.loads(p.read_text()) for p in sweep.glob("*/metrics.json")]
    bare_wall, bare_out, bare_rss = timed(
        [
            PY,
            str(ROOT / "benchmarks" / "bare_stack.py"),
            str(ROOT / "data"),
            "20",
            ",".join(WIDE_LRS),
            WIDE_SEEDS,
        ]
    )
    bare = json.loads(bare_out.strip().splitlines()[-1])
    result = {
        "trials": len(trials),
        "digitlab_s": wall,
        "sweep_check_s": float(checked.group(2)) if checked else None,
        "prepare_s": prepare,
        "setup_s": setup,
        "fit_write_s": fit,
        "fit_end_s": ending,
        "fit_s": max(m["wall_time_s"] for m in trials),
        "rest_s": wall - prepare - setup - fit - (float(checked.group(2)) if checked else 0.0),
        "bare_s": bare_wall,
        "bare_fit_s": bare["fit_s"],
        "ratio": wall / bare_wall,
        "rss_mb": rss,
        "bare_rss_mb": bare_rss,
        "val_acc_mean": sum(m["val/acc"] for m in trials) / len(trials),
        "bare_val_acc_mean": bare["val_acc_mean"],
    }
    print("wide stack", result, flush=True)
    return result


SLOPE_EPOCHS = (20, 60)


def slope(tmp: Path) -> dict:
    """What an epoch of the 256-trial stack costs, and what it costs besides its epochs, against the
    hand-written stacked loop (`bare_stack.py`) over the same trials: each run at 20 and at 60 epochs,
    digitlab and the loop alternating, `import lightning` measured in the same run. An epoch costs
    (t60 - t20) / 40; the fixed cost is t20 less 20 of those."""
    walls: dict[str, dict[int, float]] = {"digitlab": {}, "bare": {}}
    for epochs in SLOPE_EPOCHS:
        walls["digitlab"][epochs] = multirun(
            tmp / f"slope_{epochs}",
            "hydra/launcher=stacked",
            "hydra.launcher.max_stack=256",
            "experiment=fastbook_linear",
            f"optimizer.lr={','.join(WIDE_LRS)}",
            f"seed={WIDE_SEEDS}",
            f"trainer.max_epochs={epochs}",
        )[0]
        bare_stack = [PY, str(ROOT / "benchmarks" / "bare_stack.py"), str(ROOT / "data"), str(epochs)]
        walls["bare"][epochs] = timed([*bare_stack, ",".join(WIDE_LRS), WIDE_SEEDS])[0]
    low, high = SLOPE_EPOCHS
    result: dict = {"epochs": list(SLOPE_EPOCHS), "import_lightning_s": import_floor()["lightning_s"]}
    for name, wall in walls.items():
        epoch = (wall[high] - wall[low]) / (high - low)
        result[name] = {"wall_s": wall, "epoch_s": epoch, "fixed_s": wall[low] - low * epoch}
    result["epoch_ratio"] = result["digitlab"]["epoch_s"] / result["bare"]["epoch_s"]
    result["fixed_beyond_import_s"] = result["digitlab"]["fixed_s"] - result["import_lightning_s"]
    print("slope", result, flush=True)
    return result


def search(tmp: Path) -> dict:
    """The shipped search, `digitlab-train hparams_search=mlp` as a user types it, the whole command, against
    `bare_search.py` (Optuna ask/tell with the same sampler, pruner and space over a bare PyTorch loop,
    trials one at a time), in the same run: wall time, best val/acc_best, epochs trained, trials pruned."""
    import optuna
    from bare_search import trained_gflop

    sweep = tmp / "search"
    wall, _, rss = timed(
        [PY, "-m", "digitlab.cli.train", "hparams_search=mlp", f"hydra.sweep.dir={sweep}", *QUIET]
    )
    study = _study(sweep, "mlp")
    trials = study.get_trials(deepcopy=False)
    bare_wall, bare_out, bare_rss = timed(
        [PY, str(ROOT / "benchmarks" / "bare_search.py"), str(ROOT / "data")]
    )
    bare = json.loads(bare_out.strip().splitlines()[-1])
    ray = None
    ray_python = os.environ.get("DIGITLAB_BENCH_RAY_PYTHON")  # a Python with ray[tune] (ray_search.py)
    if ray_python:
        ray_wall, ray_out, _ = timed(
            [ray_python, str(ROOT / "benchmarks" / "ray_search.py"), str(ROOT / "data")]
        )
        ray = {**json.loads(ray_out.strip().splitlines()[-1]), "wall_s": ray_wall}
    # The tools' searches choose different trials (widths, epochs): the math each did, to compare cost per FLOP.
    rows = (bare["train_rows"], bare["valid_rows"])
    widths = Counter()
    for trial in trials:
        widths[int(trial.params["model.net.hidden"])] += len(trial.intermediate_values)
    if ray:
        ray["gflop"] = trained_gflop(ray["epochs_by_width"], *rows)
    result = {
        "trials": len(trials),
        "digitlab_s": wall,
        "best": study.best_value,
        "best_params": study.best_params,
        "epochs": sum(len(t.intermediate_values) for t in trials),
        "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in trials),
        "gflop": trained_gflop(widths, *rows),
        "rss_mb": rss,
        "bare_s": bare_wall,
        "bare_gflop": trained_gflop(bare["epochs_by_width"], *rows),
        "bare_best": bare["best"],
        "bare_best_params": bare["best_params"],
        "bare_epochs": bare["epochs"],
        "bare_pruned": bare["pruned"],
        "bare_rss_mb": bare_rss,
        "ratio": wall / bare_wall,
        "ray": ray,
        # The shipped searches are continuous stacks (digitlab/stacked/slots.py); the same searches one trial
        # at a time, and linear_lr as shipped, in the same run.
        "mlp_alone": _search_run(tmp / "mlp_alone", "mlp", "hydra/launcher=basic", "hydra.sweeper.n_jobs=1"),
        "linear_lr": _search_run(tmp / "linear_lr", "linear_lr"),
        "linear_lr_alone": _search_run(
            tmp / "linear_lr_alone", "linear_lr", "hydra/launcher=basic", "hydra.sweeper.n_jobs=1"
        ),
    }
    print("search", result, flush=True)
    return result


def _study(sweep: Path, name: str):
    import optuna
    from optuna.storages.journal import JournalFileBackend

    storage = optuna.storages.JournalStorage(JournalFileBackend(str(sweep / "study.journal")))
    return optuna.load_study(study_name=name, storage=storage)


def _search_run(sweep: Path, name: str, *overrides: str) -> dict:
    """`digitlab-train hparams_search=<name> <overrides>`, the whole command: wall, best, epochs, pruned."""
    import optuna

    wall, _, rss = timed(
        [
            PY,
            "-m",
            "digitlab.cli.train",
            f"hparams_search={name}",
            f"hydra.sweep.dir={sweep}",
            *QUIET,
            *overrides,
        ]
    )
    study = _study(sweep, name)
    trials = study.get_trials(deepcopy=False)
    return {
        "command": " ".join([f"hparams_search={name}", *overrides]),
        "wall_s": wall,
        "best": study.best_value,
        "epochs": sum(len(t.intermediate_values) for t in trials),
        "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in trials),
        "rss_mb": rss,
    }


STACK_SIZES = (1, 16, 64, 256)


def stack_sizes(tmp: Path) -> dict:
    """Fit time per trial of K stacked linear trials (seeds 0..K-1, one shuffle order, 5 epochs), on the CPU
    and, where there is one, the GPU. K = 1 is a single run (nothing to stack it with)."""
    import torch

    result = {}
    for accelerator in ("cpu", "gpu") if torch.cuda.is_available() else ("cpu",):
        rows = []
        for k in STACK_SIZES:
            sweep = tmp / f"sizes_{accelerator}_{k}"
            multirun(
                sweep,
                "hydra/launcher=stacked",
                f"hydra.launcher.max_stack={max(STACK_SIZES)}",
                "experiment=fastbook_linear",
                f"accelerator={accelerator}",
                f"seed=range(0,{k})",
                "data.seed=0",
                "trainer.max_epochs=5",
            )
            fit = max(json.loads(p.read_text())["wall_time_s"] for p in sweep.glob("*/metrics.json"))
            rows.append({"trials": k, "fit_s": fit, "per_trial_s": fit / k})
        for row in rows:
            row["per_trial_vs_one"] = row["per_trial_s"] / rows[0]["per_trial_s"]
        result[accelerator] = rows
        print("stack sizes", accelerator, rows, flush=True)
    return result


SECTIONS = (
    "models",
    "startup",
    "data",
    "sweeps",
    "stacked",
    "wide_stack",
    "slope",
    "stack_sizes",
    "search",
    "imports",
)


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", choices=SECTIONS, help="re-measure one section; the others stay as recorded"
    )
    only = parser.parse_args().only
    if only:
        results = json.loads(RESULTS_JSON.read_text())
        with tempfile.TemporaryDirectory(prefix="digitlab-bench-") as tmp_name:
            results[only] = _section(only, Path(tmp_name))
        results.setdefault("measured_alone", {})[only] = time.strftime("%Y-%m-%d %H:%M")
        RESULTS_JSON.write_text(json.dumps(results, indent=2) + "\n")
        print(render.write(RESULTS_JSON))
        return
    data_dir = ROOT / "data"
    with tempfile.TemporaryDirectory(prefix="digitlab-bench-") as tmp_name:
        tmp = Path(tmp_name)
        timed([PY, str(PROBES / "fetch_batches.py"), str(data_dir)])  # data and cache ready before timing
        imports = import_floor()
        rows = models(tmp, data_dir)
        start = startup(tmp)
        data_ = data(tmp, data_dir, next(r for r in rows if r["model"] == "linear")["epoch_s"])
        sweep = sweeps(tmp)
        stack = stacked(tmp)
        wide = wide_stack(tmp)
        slopes = slope(tmp)
        sizes = stack_sizes(tmp)
        searched = search(tmp)
    import lightning
    import torch

    results = {
        "machine": {
            "arch": platform.machine(),
            "processor": platform.processor() or "cpu",
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "lightning": lightning.__version__,
        },
        "models": rows,
        "startup": start,
        "data": data_,
        "sweeps": sweep,
        "stacked": stack,
        "wide_stack": wide,
        "slope": slopes,
        "stack_sizes": sizes,
        "search": searched,
        "imports": imports,
    }
    RESULTS_JSON.write_text(json.dumps(results, indent=2) + "\n")
    print(render.write(RESULTS_JSON))


def _section(name: str, tmp: Path) -> object:
    data_dir = ROOT / "data"
    if name == "models":
        return models(tmp, data_dir)
    if name == "startup":
        return startup(tmp)
    if name == "sweeps":
        return sweeps(tmp)
    if name == "imports":
        return import_floor()
    if name == "stacked":
        return stacked(tmp)
    if name == "stack_sizes":
        return stack_sizes(tmp)
    if name == "wide_stack":
        return wide_stack(tmp)
    if name == "slope":
        return slope(tmp)
    if name == "search":
        return search(tmp)
    raise SystemExit(f"--only {name}: the data section needs the models' epoch time; run the whole bench")


if __name__ == "__main__":
    main()
