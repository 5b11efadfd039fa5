"""digitlab's overhead, measured against a bare PyTorch loop in the same run: `make bench`.

Prints the figures and writes them to benchmarks/RESULTS.md with the machine and versions:
- linear (20 epochs), MLP (40), resnet18 (1): time per epoch (training + validation) and whole-process wall
  time of `digitlab-train`, next to `bare_loop.py` (same data in memory, model, batch, optimizer); accuracy;
- start-up: composing the config (`--cfg job`), and process start to the first training step;
- data: loading the cached dataset, and the share of an epoch spent fetching batches;
- sweeps: an 8-job multirun against the sum of its jobs' training time; joblib with 2 jobs against
  sequential, for linear and MLP sweeps;
- peak memory (max RSS) of each training process.
- the import floor: `import lightning` against `import torch`, what any Lightning program pays at start.
Timings on a shared machine are noisy: the models alternate digitlab and bare runs REPEATS times and report
medians, the import floor and start-up figures are medians of 3, the sweeps are single runs.
"""

from __future__ import annotations

import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
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


def train(args: list[str], tmp: Path, name: str) -> tuple[float, dict, int]:
    run_dir = tmp / name
    wall, _, rss = timed([PY, "-m", "digitlab.train", *args, f"hydra.run.dir={run_dir}", *QUIET])
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


def import_floor() -> dict:
    """Seconds from process start until `import torch`, and `import lightning` (which imports torchmetrics,
    torchvision, torch._dynamo and scipy.signal), have returned; median of 3 each. Measured inside the
    process (its age from /proc), so the interpreter's exit is not counted."""
    result = {}
    for module in ("torch", "lightning"):
        code = f"import {module}, sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); import process_age; "
        code += "print(process_age.process_age_s())"
        ages = [float(timed([PY, "-c", code])[1].strip().splitlines()[-1]) for _ in range(3)]
        result[f"{module}_s"] = statistics.median(ages)
    result["floor_s"] = result["lightning_s"] - result["torch_s"]
    print("imports", result, flush=True)
    return result


def startup(tmp: Path) -> dict:
    """Composing the config (`--cfg job`, whole process) and process start to the first training step;
    median of 3 each."""
    compose = statistics.median(timed([PY, "-m", "digitlab.train", "--cfg", "job"])[0] for _ in range(3))
    first_steps = []
    for repeat in range(3):
        marker = tmp / f"first_step{repeat}.json"
        timer = "+callbacks.first_step={_target_:first_step.FirstStepTimer,path:" + str(marker) + "}"
        env_path = f"{ROOT / 'benchmarks'}"
        cmd = [
            PY,
            "-c",
            f"import sys; sys.path.insert(0, {env_path!r}); from digitlab.train import cli; "
            "sys.argv[0]='digitlab-train'; cli()",
            "trainer.max_epochs=1",
            timer,
            f"hydra.run.dir={tmp / f'first_step{repeat}'}",
            *QUIET,
        ]
        timed(cmd)
        first_steps.append(json.loads(marker.read_text())["first_step_s"])
    return {"compose_s": compose, "first_step_s": statistics.median(first_steps)}


def data(tmp: Path, data_dir: Path, linear_epoch_s: float) -> dict:
    code = f"""
import json, statistics, time
from digitlab.data import MnistSampleDataModule
dm = MnistSampleDataModule(data_dir={str(data_dir)!r})
t = time.perf_counter(); dm.setup(); load = time.perf_counter() - t
train, valid = dm.train_dataloader(), dm.val_dataloader()
epochs = []
for _ in range(7):
    t = time.perf_counter()
    for batch in train: pass
    for batch in valid: pass
    epochs.append(time.perf_counter() - t)
print(json.dumps({{"load_s": load, "fetch_epoch_s": statistics.median(epochs)}}))
"""
    _, out, _ = timed([PY, "-c", code])
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
            walls[launcher], _, _ = timed(
                [PY, "-m", "digitlab.train", "-m", *args, *extra, f"hydra.sweep.dir={sweep}", *QUIET]
            )
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


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def report(rows: list[dict], start: dict, data_: dict, sweep: dict, imports: dict) -> str:
    import lightning
    import torch

    lines = [
        "# Benchmark results",
        "",
        "Written by `make bench` (benchmarks/bench.py), every figure taken side by side with its baseline in the",
        "same run: linear and MLP are medians of 3 alternating digitlab / bare runs, resnet18 of 2, the start-up",
        "figures of 3, the sweeps single runs. digitlab runs use the experiment configs as shipped (CPU:",
        "deterministic algorithms on), with the progress bar off.",
        "",
        f"Machine: {platform.machine()}, {platform.processor() or 'cpu'}, {__import__('os').cpu_count()} cores; "
        f"Python {platform.python_version()}, torch {torch.__version__}, lightning {lightning.__version__}.",
        "",
        "## Training: digitlab against a bare PyTorch loop",
        "",
        "| model | epochs | epoch s (digitlab) | epoch s (bare) | ratio | process s (digitlab) | process s (bare) "
        "| extra s | val/acc (digitlab) | val/acc (bare) | peak MB (digitlab) | peak MB (bare) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['epochs']} | {r['epoch_s']:.3f} | {r['bare_epoch_s']:.3f} | {r['epoch_ratio']:.2f} "
            f"| {r['process_s']:.1f} | {r['bare_process_s']:.1f} | {r['process_extra_s']:+.1f} | {r['acc']:.4f} "
            f"| {r['bare_acc']:.4f} | {r['rss_mb']} | {r['bare_rss_mb']} |"
        )
    by = {r["model"]: r for r in rows}
    targets = [
        (
            "resnet18 epoch time <= 1.1 x bare loop",
            f"{by['resnet18']['epoch_ratio']:.2f} x",
            by["resnet18"]["epoch_ratio"] <= 1.1,
        ),
        (
            "linear whole process <= bare + 2 s",
            f"{by['linear']['process_extra_s']:+.1f} s",
            by["linear"]["process_extra_s"] <= 2,
        ),
        (
            "MLP whole process <= bare + 2 s",
            f"{by['mlp']['process_extra_s']:+.1f} s",
            by["mlp"]["process_extra_s"] <= 2,
        ),
        (
            "config composition (`--cfg job`, whole process) < 1.5 s",
            f"{start['compose_s']:.2f} s",
            start["compose_s"] < 1.5,
        ),
        (
            "process start to first training step < 4 s",
            f"{start['first_step_s']:.2f} s",
            start["first_step_s"] < 4,
        ),
        ("cached dataset load < 0.3 s", f"{data_['load_s']:.3f} s", data_["load_s"] < 0.3),
        (
            "batch fetching < 5 % of an epoch (linear)",
            f"{100 * data_['fetch_share']:.1f} %",
            data_["fetch_share"] < 0.05,
        ),
        (
            "8-job sequential sweep <= 1.2 x sum of training times (linear)",
            f"{sweep['linear_sequential_over_fits']:.2f} x",
            sweep["linear_sequential_over_fits"] <= 1.2,
        ),
        (
            "8-job sequential sweep <= 1.2 x sum of training times (MLP)",
            f"{sweep['mlp_sequential_over_fits']:.2f} x",
            sweep["mlp_sequential_over_fits"] <= 1.2,
        ),
        (
            "joblib (2 jobs) >= 1.6 x faster than sequential (linear)",
            f"{sweep['linear_joblib_speedup']:.2f} x",
            sweep["linear_joblib_speedup"] >= 1.6,
        ),
        (
            "joblib (2 jobs) >= 1.6 x faster than sequential (MLP)",
            f"{sweep['mlp_joblib_speedup']:.2f} x",
            sweep["mlp_joblib_speedup"] >= 1.6,
        ),
    ]
    lines += ["", "## Targets", "", "| target | measured | |", "|---|---|---|"]
    lines += [f"| {name} | {value} | {verdict(ok)} |" for name, value, ok in targets]
    floor = imports["floor_s"]
    lines += [
        "",
        "## The import floor",
        "",
        f"- Process start to `import torch` done: {imports['torch_s']:.2f} s; to `import lightning` done: "
        f"{imports['lightning_s']:.2f} s (Lightning imports torchmetrics, which imports torchvision, "
        "`torch._dynamo` and `scipy.signal`). Any Lightning program pays these "
        f"{floor:.2f} s over a bare PyTorch script before its first line runs.",
        f"- Whole-process overhead beyond that floor: linear {by['linear']['process_extra_s'] - floor:+.2f} s, "
        f"MLP {by['mlp']['process_extra_s'] - floor:+.2f} s, resnet18 "
        f"{by['resnet18']['process_extra_s'] - floor:+.2f} s"
        + (
            " (below zero: digitlab's commands skip the garbage collector's pass at exit, about 0.7 s of the "
            "bare script's own exit)."
            if any(r["process_extra_s"] < floor for r in rows)
            else "."
        ),
        "",
        "## Start-up, data, sweeps",
        "",
        f"- `digitlab-train --cfg job` (compose and print the config): {start['compose_s']:.2f} s whole process.",
        f"- Process start to the first training step (linear, warm cache): {start['first_step_s']:.2f} s.",
        f"- Cached MNIST_SAMPLE load (`setup()`): {data_['load_s']:.3f} s; iterating one training and one validation "
        f"epoch of batches: {data_['fetch_epoch_s']:.4f} s, {100 * data_['fetch_share']:.1f} % of a linear epoch.",
        f"- Linear sweep, {sweep['linear_jobs']} jobs: sequential {sweep['linear_sequential_s']:.1f} s against "
        f"{sweep['linear_sum_fit_s']:.1f} s of summed training; joblib with 2 jobs {sweep['linear_joblib2_s']:.1f} s.",
        f"- MLP sweep (10 epochs), {sweep['mlp_jobs']} jobs: sequential {sweep['mlp_sequential_s']:.1f} s against "
        f"{sweep['mlp_sum_fit_s']:.1f} s of summed training; joblib with 2 jobs {sweep['mlp_joblib2_s']:.1f} s.",
        "- Per job of a sequential sweep, beyond its training and the one start-up (`import lightning`): linear "
        f"{(sweep['linear_sequential_s'] - sweep['linear_sum_fit_s'] - imports['lightning_s']) / sweep['linear_jobs']:.2f} s, "
        f"MLP {(sweep['mlp_sequential_s'] - sweep['mlp_sum_fit_s'] - imports['lightning_s']) / sweep['mlp_jobs']:.2f} s "
        "(Hydra composes each job's config twice, the sweep summary is written at the end).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    data_dir = ROOT / "data"
    with tempfile.TemporaryDirectory(prefix="digitlab-bench-") as tmp_name:
        tmp = Path(tmp_name)
        subprocess.run(
            [
                PY,
                "-c",
                f"from digitlab.data import MnistSampleDataModule as M; M(data_dir={str(data_dir)!r}).setup()",
            ],
            check=True,
        )  # data and cache ready before anything is timed
        imports = import_floor()
        rows = models(tmp, data_dir)
        start = startup(tmp)
        data_ = data(tmp, data_dir, next(r for r in rows if r["model"] == "linear")["epoch_s"])
        sweep = sweeps(tmp)
    text = report(rows, start, data_, sweep, imports)
    (ROOT / "benchmarks" / "RESULTS.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
