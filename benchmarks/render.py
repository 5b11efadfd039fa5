"""benchmarks/results.json (written by `make bench`) -> benchmarks/RESULTS.md: `python benchmarks/render.py`.
The figures are kept as data; this file only words them, with each target's verdict."""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def report(results: dict) -> str:
    rows, start, data_ = results["models"], results["startup"], results["data"]
    sweep, imports, machine = results["sweeps"], results["imports"], results["machine"]
    lines = [
        "# Benchmark results",
        "",
        "Written by `make bench` (benchmarks/bench.py), every figure taken side by side with its baseline in the",
        "same run: linear and MLP are medians of 3 alternating digitlab / bare runs, resnet18 of 2, the start-up",
        "figures of 3, the sweeps single runs. digitlab runs use the experiment configs as shipped (CPU:",
        "deterministic algorithms on), with the progress bar off.",
        "",
        f"Machine: {machine['arch']}, {machine['processor']}, {machine['cores']} cores; Python "
        f"{machine['python']}, torch {machine['torch']}, lightning {machine['lightning']}.",
        "",
    ]
    alone = results.get("measured_alone")
    if alone:
        lines += [
            "Measured later on their own (`bench.py --only SECTION`, each still against its own baseline): "
            + ", ".join(f"{section} ({when})" for section, when in sorted(alone.items()))
            + ". The other sections are from the last full `make bench`.",
            "",
        ]
    lines += [
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
    stack = results.get("stacked")
    if stack:
        targets += [
            (
                "24-job lr x seed sweep, stacked >= 4 x faster than basic (linear)",
                f"{stack['linear_speedup']:.2f} x",
                stack["linear_speedup"] >= 4,
            ),
            (
                "24-job lr x seed sweep, stacked >= 2.5 x faster than basic (MLP, 10 epochs)",
                f"{stack['mlp_speedup']:.2f} x",
                stack["mlp_speedup"] >= 2.5,
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
        "`torch._dynamo`, and `scipy.signal` where scipy is installed). Any Lightning program pays these "
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
    if stack:
        lines += ["## Stacked sweeps (`hydra/launcher=stacked`)", ""]
        one_job_mb = {row["model"]: row["rss_mb"] for row in results.get("models", [])}
        for name in ("linear", "mlp"):
            lines.append(
                f"- {name}, {stack[f'{name}_jobs']} jobs (`optimizer.lr=0.03,0.1,0.3,1,3,10 seed=0,1,2,3`): basic "
                f"{stack[f'{name}_basic_s']:.1f} s ({stack[f'{name}_basic_sum_fit_s']:.1f} s of it in the jobs' fits), "
                f"stacked {stack[f'{name}_stacked_s']:.1f} s ({stack[f'{name}_stacked_fit_s']:.1f} s in its one fit): "
                f"{stack[f'{name}_speedup']:.2f} x. Peak memory {stack[f'{name}_stacked_rss_mb']} MB stacked, "
                f"{stack[f'{name}_basic_rss_mb']} MB basic (24 jobs in one process), "
                f"{one_job_mb.get(name, '?')} MB for one job alone (the training table). "
                "Largest difference from the basic runs: val/loss "
                f"{stack[f'{name}_max_diff_val_loss']:.1e}, val/acc {stack[f'{name}_max_diff_val_acc']:.1e}."
            )
            if name == "linear" and "linear_bare_stack_s" in stack:
                lines.append(
                    f"  - a hand-written stacked PyTorch loop over the same 24 trials (`bare_stack.py`, no run "
                    f"folders, logs or checkpoints), in the same run: {stack['linear_bare_stack_s']:.1f} s "
                    f"({stack['linear_bare_stack_fit_s']:.1f} s training); the stacked sweep takes "
                    f"{stack['linear_vs_bare_stack']:.1f} x that"
                )
            if f"{name}_val_loss_diff_by_lr" in stack:
                by_lr = stack[f"{name}_val_loss_diff_by_lr"]
                lines.append(
                    "  - largest val/loss difference by lr: "
                    + ", ".join(
                        f"{lr}: {diff:.1e}" for lr, diff in sorted(by_lr.items(), key=lambda x: float(x[0]))
                    )
                )
            if f"{name}_stacked_setup_s" in stack:
                lines.append(
                    f"  - the stacked command's time: {stack[f'{name}_stacked_setup_s']:.1f} s setting up "
                    f"the job folders, "
                    f"{stack[f'{name}_stacked_fit_write_s']:.1f} s in the fit with its run dirs written, "
                    f"{stack[f'{name}_stacked_rest_s']:.1f} s the rest (process start, composing the sweep, "
                    "the sweep summary and compare table)"
                )
        lines.append("")
    wide = results.get("wide_stack")
    if wide:
        check = (
            f"{wide['sweep_check_s']:.1f} s checking every job before the first trains, "
            if wide.get("sweep_check_s")
            else ""
        )
        lines += [
            "## A wide stacked sweep (`bench.py --only wide_stack`)",
            "",
            f"- {wide['trials']} linear trials (fastbook_linear, 20 epochs, 64 learning rates from 0.01 to 10 x seeds "
            f"0-3), `hydra/launcher=stacked hydra.launcher.max_stack=256`, command to compare table: "
            f"{wide['digitlab_s']:.1f} s; a hand-written stacked PyTorch loop over the same trials "
            f"(`bare_stack.py`, no run folders, logs or checkpoints): {wide['bare_s']:.1f} s, of which "
            f"{wide['bare_fit_s']:.1f} s training. Ratio {wide['ratio']:.1f} x.",
            f"  - where digitlab's time goes: {check}"
            + (
                f"{wide['prepare_s']:.1f} s in the launcher taking the checked jobs (composed and resolved by "
                "the check) and grouping them, "
                if "prepare_s" in wide
                else ""
            )
            + f"{wide['setup_s']:.1f} s setting up the {wide['trials']} job folders (`.hydra/`, `on_job_start`), "
            f"{wide['fit_write_s']:.1f} s in the fit with every trial's run folder written ({wide['fit_s']:.1f} s "
            f"the fit itself, by its own clock: {wide['fit_s'] / wide['trials'] * 1000:.0f} ms a trial, against "
            f"{wide['bare_fit_s'] / wide['trials'] * 1000:.0f} ms in the hand-written loop; one checkpoint of the "
            "stack per epoch, linked into the trials' folders"
            + (
                f"; {wide['fit_end_s']:.1f} s of it at the end, drawing each trial's pictures and writing its own "
                "checkpoints"
                if "fit_end_s" in wide
                else ""
            )
            + "), "
            f"{wide['rest_s']:.1f} s the rest (process start, composing the "
            "sweep, the summary and compare table).",
            f"  - mean val/acc over the trials: {wide['val_acc_mean']:.4f} (digitlab), {wide['bare_val_acc_mean']:.4f} "
            f"(hand-written); peak memory {wide['rss_mb']} MB and {wide['bare_rss_mb']} MB.",
            "",
        ]
    sizes = results.get("stack_sizes")
    if sizes:
        lines += [
            "## Stack size (`bench.py --only stack_sizes`)",
            "",
            "Fit time per trial of K stacked linear trials (fastbook_linear, 5 epochs, seeds 0..K-1, one shuffle "
            "order); K = 1 is a single run.",
            "",
            "| device | trials | fit s | per trial s | per trial vs 1 |",
            "|---|---|---|---|---|",
        ]
        for device, rows in sizes.items():
            lines += [
                f"| {device} | {r['trials']} | {r['fit_s']:.2f} | {r['per_trial_s']:.3f} | {r['per_trial_vs_one']:.3f} |"
                for r in rows
            ]
        if "gpu" not in sizes:
            lines.append(
                "\nNo GPU was lent to the sessions that measured this: the GPU rows are not measured."
            )
        lines.append("")
    slope = results.get("slope")
    if slope:
        low, high = slope["epochs"]
        mine, bare = slope["digitlab"], slope["bare"]

        def seconds(row: dict) -> str:
            return " | ".join(f"{row['wall_s'][str(e)]:.1f}" for e in (low, high))

        lines += [
            "## The stack's slope (`bench.py --only slope`)",
            "",
            f"The 256-trial stack of the wide sweep above at {low} and {high} epochs, against the hand-written "
            "stacked loop over the same trials, alternating in the same run: what one more epoch costs, and what "
            f"the command costs besides its epochs ({low} epochs' wall time less {low} of those).",
            "",
            f"| | {low} epochs, s | {high} epochs, s | per epoch, s | fixed, s |",
            "|---|---|---|---|---|",
            f"| digitlab | {seconds(mine)} | {mine['epoch_s']:.3f} | {mine['fixed_s']:.1f} |",
            f"| hand-written | {seconds(bare)} | {bare['epoch_s']:.3f} | {bare['fixed_s']:.1f} |",
            "",
            f"An epoch of the stack costs {slope['epoch_ratio']:.1f} x the loop's (target: 1.5 x or less, "
            f"{verdict(slope['epoch_ratio'] <= 1.5)}). Of its fixed cost, `import lightning` is "
            f"{slope['import_lightning_s']:.1f} s, measured in the same run; the rest is "
            f"{slope['fixed_beyond_import_s']:.1f} s (target: 6 s or less, "
            f"{verdict(slope['fixed_beyond_import_s'] <= 6)}).",
            "",
        ]
    search = results.get("search")
    if search:

        def gflop(value: float | None, wall: float) -> str:
            return "- | -" if value is None else f"{value:.0f} | {value / wall:.1f}"

        def params(best: dict) -> str:
            return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in best.items())

        lines += [
            "## The shipped search (`bench.py --only search`)",
            "",
            "`digitlab-train hparams_search=mlp` as shipped (seeded TPE over lr, hidden width and batch size, "
            f"{search['trials']} trials of up to 40 epochs, successive halving, a continuous stack of 4 slots), the whole command, against "
            "`bare_search.py`: the Optuna ask/tell loop over bare PyTorch a researcher writes instead (the same "
            "sampler, pruner and space, the data in memory, trials one at a time, no run folders, logs or "
            "checkpoints), in the same run.",
            "",
            "| | wall s | best val/acc_best | epochs trained | trials pruned | GFLOP trained | GFLOP per wall s "
            "| peak MB | best trial |",
            "|---|---|---|---|---|---|---|---|---|",
            f"| digitlab | {search['digitlab_s']:.1f} | {search['best']:.4f} | {search['epochs']} | "
            f"{search['pruned']} | {gflop(search.get('gflop'), search['digitlab_s'])} | {search['rss_mb']} | "
            f"{params(search['best_params'])} |",
            f"| hand-written | {search['bare_s']:.1f} | {search['bare_best']:.4f} | {search['bare_epochs']} | "
            f"{search['bare_pruned']} | {gflop(search.get('bare_gflop'), search['bare_s'])} | "
            f"{search['bare_rss_mb']} | {params(search['bare_best_params'])} |",
        ]
        ray = search.get("ray")
        if ray:
            lines.append(
                f"| Ray Tune 2.60 (OptunaSearch, ASHA, 2 at once) | {ray['wall_s']:.1f} | {ray['best']:.4f} | "
                f"{ray['epochs']} | {ray['pruned']} | {gflop(ray.get('gflop'), ray['wall_s'])} | - | "
                f"{params(ray['best_params'])} |"
            )
        lines += [
            "",
            f"digitlab takes {search['ratio']:.1f} x the hand-written search. The two studies need not propose "
            "the same trials: the sampler sees the same results only while the trials' numbers agree to the "
            "last digit. A trial's cost grows with its width, so the math each search did differs: GFLOP "
            "trained counts its trials' forward and backward passes (`bare_search.trained_gflop`), and GFLOP "
            "per wall second is that over the whole command.",
            "",
        ]
        runs = [search[key] for key in ("mlp_alone", "linear_lr", "linear_lr_alone") if key in search]
        if runs:
            lines += [
                "The shipped searches are continuous stacks (`digitlab/stacked/slots.py`: a search's trials in one "
                "fit of `hydra.sweeper.n_jobs` slots, each slot refilled at an epoch's end); the same searches one "
                "trial at a time, in the same run:",
                "",
                "| command | wall s | best val/acc_best | epochs trained | trials pruned | peak MB |",
                "|---|---|---|---|---|---|",
                *(
                    f"| `digitlab-train {r['command']}` | {r['wall_s']:.1f} | {r['best']:.4f} | {r['epochs']} | "
                    f"{r['pruned']} | {r['rss_mb']} |"
                    for r in runs
                ),
                "",
            ]
    return "\n".join(lines)


def write(results_json: Path = HERE / "results.json") -> str:
    text = report(json.loads(results_json.read_text()))
    (HERE / "RESULTS.md").write_text(text)
    return text


if __name__ == "__main__":
    print(write(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "results.json"))
