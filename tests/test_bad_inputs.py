"""Every bad value is a clear error before any work: one table of what a hurried user types, across every
entry point and launcher. Each case must exit non-zero (1, or 2 for a usage error), print no traceback,
name what was typed, create no file or folder, and leave the user's data as it was.

The entry points run in-process (their console-script functions, with `sys.argv` set), so the table stays
fast; output is captured at the file-descriptor level, so nothing printed escapes the check.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import cli, tiny_overrides

TRAIN, EVAL, PREDICT, COMPARE, DASHBOARD = "train", "eval", "predict", "compare", "dashboard"

# (entry point, arguments, what the message must name). `{...}` are filled from `places`.
CASES = [
    # run settings
    (TRAIN, ["seed=abc"], "seed='abc'"),
    (TRAIN, ["seed=-5"], "seed=-5"),
    (TRAIN, ["seed=1.5"], "seed=1.5"),
    (TRAIN, ["seed=99999999999"], "seed=99999999999"),
    (TRAIN, ["resume=maybe"], "resume='maybe'"),
    (TRAIN, ["lr_find=yes"], "lr_find='yes'"),
    (TRAIN, ["torch_threads=0"], "torch_threads=0"),
    (TRAIN, ["tags=abc"], "tags='abc'"),
    (TRAIN, ["print_config=2"], "print_config=2"),
    # a key the composed config does not have: named with the node's keys, before Hydra's "not in struct"
    (TRAIN, ["optimizer.lrr=1"], "optimizer has no key 'lrr'; its keys are _target_, _partial_, lr"),
    (TRAIN, ["trainer.profiler=simple"], "write +trainer.profiler=simple"),
    (TRAIN, ["-m", "trainer.limit_train_batches=2,3"], "trainer has no key 'limit_train_batches'"),
    (TRAIN, ["-m", "model=linear,mlp", "model.net.hidden=5"], "(with model=linear, the sweep's first job)"),
    (TRAIN, ["foo.bar=1"], "the config has no key 'foo'"),
    (TRAIN, ["optimizer.lr.x=1"], "optimizer.lr is a value (1.0)"),
    (TRAIN, ["model.optimizer.lr=0.5"], "Set optimizer.lr=0.5 instead"),
    # optimizer and scheduler: built for real on a stand-in parameter
    (TRAIN, ["optimizer.lr=-1"], "optimizer.lr=-1"),
    (TRAIN, ["optimizer.lr=0"], "optimizer.lr=0"),
    (TRAIN, ["optimizer.lr=inf"], "optimizer.lr=inf"),
    (TRAIN, ["optimizer.lr=nan"], "optimizer.lr=nan"),
    (TRAIN, ["optimizer.lr=fast"], "optimizer.lr='fast'"),
    (TRAIN, ["optimizer.weight_decay=-1"], "optimizer.weight_decay=-1"),
    (TRAIN, ["optimizer.momentum=-0.5"], "optimizer.momentum=-0.5"),
    (TRAIN, ["optimizer.momentum=1.5"], "optimizer.momentum=1.5 is invalid: it must be a finite number >= 0"),
    (TRAIN, ["optimizer.momentum=1"], "optimizer.momentum=1"),
    (TRAIN, ["+optimizer.dampening=2"], "optimizer.dampening=2"),
    (TRAIN, ["optimizer=adam", "optimizer.weight_decay=-0.1"], "optimizer.weight_decay=-0.1"),
    (TRAIN, ["scheduler=one_cycle", "+scheduler.div_factor=0"], "scheduler.div_factor=0"),
    (TRAIN, ["scheduler=one_cycle", "+scheduler.final_div_factor=-1"], "scheduler.final_div_factor=-1"),
    (TRAIN, ["scheduler=one_cycle", "scheduler.pct_start=0"], "scheduler.pct_start=0"),
    (TRAIN, ["optimizer=adam", "optimizer.betas=[0.9]"], "optimizer.betas=[0.9]"),
    (TRAIN, ["optimizer=adam", "optimizer.betas=[0.9,1.5]"], "optimizer.betas=[0.9, 1.5]"),
    (TRAIN, ["optimizer=adamw", "optimizer.eps=-1"], "optimizer.eps=-1"),
    (TRAIN, ["optimizer=basic_optim", "optimizer.lr=-2"], "optimizer.lr=-2"),
    (TRAIN, ["+optimizer.betas=[0.9,0.99]"], "optimizer.betas is not a setting of torch.optim.SGD"),
    (TRAIN, ["optimizer=nesterov"], "optimizer/nesterov"),
    (TRAIN, ["scheduler=one_cycle", "scheduler.pct_start=2"], "scheduler.pct_start=2"),
    (TRAIN, ["scheduler=cosine", "scheduler.eta_min=-1"], "scheduler.eta_min=-1"),
    (TRAIN, ["scheduler=step"], "scheduler/step"),
    # data
    (TRAIN, ["data.batch_size=0"], "data.batch_size=0"),
    (TRAIN, ["data.batch_size=many"], "data.batch_size='many'"),
    (TRAIN, ["data.eval_batch_size=-3"], "data.eval_batch_size=-3"),
    (TRAIN, ["data.download_timeout=0"], "data.download_timeout=0"),
    (TRAIN, ["data.shuffle=sometimes"], "data.shuffle='sometimes'"),
    (TRAIN, ["data.root={missing}"], "data.root='{missing}'"),
    # the dataset itself, checked before any folder is made
    (TRAIN, ["data.root={jpeg_root}"], "'{jpeg_root}/train/3/0.png' is a JPEG image, not a PNG"),
    (TRAIN, ["data.root={empty_class_root}"], "'{empty_class_root}/train/3' holds no images"),
    (TRAIN, ["data.root={extra_class_root}"], "'{extra_class_root}/train/8' is a class folder"),
    (TRAIN, ["data.root={wrong_size_root}"], "is 32x32 pixels; MNIST images are 28x28"),
    (TRAIN, ["-m", "data.root={jpeg_root}", "seed=0,1"], "is a JPEG image, not a PNG"),
    (
        TRAIN,
        ["-m", "hydra/launcher=stacked", "data.root={extra_class_root}", "seed=0,1"],
        "is a class folder",
    ),
    (TRAIN, ["data=mnist", "loss=mnist_loss"], "loss=mnist_loss"),
    (TRAIN, ["data=fashion"], "data/fashion"),
    # model
    (TRAIN, ["model=mlp", "model.net.hidden=0"], "model.net.hidden=0"),
    (TRAIN, ["model=mlp", "model.net.depth=-1"], "model.net.depth=-1"),
    (TRAIN, ["model=mlp", "model.net.hidden=wide"], "model.net.hidden='wide'"),
    (TRAIN, ["model=pixel_similarity", "model.distance=l3"], "model.distance='l3'"),
    (TRAIN, ["model=pixel_similarity", "optimizer=adam"], "optimizer=adam does not apply"),
    (TRAIN, ["model=resnet18", "loss=cross_entropy", "model.net.stem=bw"], "model.net.stem='bw'"),
    (TRAIN, ["model=resnet18", "loss=cross_entropy", "model.net.pretrained=maybe"], "pretrained='maybe'"),
    (TRAIN, ["model=transformer"], "model/transformer"),
    (TRAIN, ["+model.net.width=3"], "model.net.width is not a setting"),
    # trainer, callbacks, loggers, accelerator
    (TRAIN, ["trainer.max_epochs=0"], "trainer.max_epochs=0"),
    (TRAIN, ["trainer.max_epochs=2.5"], "trainer.max_epochs=2.5"),
    (TRAIN, ["trainer.accelerator=tpu"], "trainer.accelerator='tpu'"),
    (TRAIN, ["accelerator=gpu"], "accelerator=gpu"),
    (TRAIN, ["accelerator=ddp"], "(accelerator=ddp)"),  # what was typed, not the gpu it stands on
    (TRAIN, ["trainer.devices=4096"], "trainer.devices=4096 asks for 4096 training processes"),
    (TRAIN, ["trainer.precision=16-mixed"], "trainer.precision='16-mixed' is fp16 mixed precision"),
    # what Lightning's Trainer itself refuses, named before the run folder exists
    (TRAIN, ["trainer.devices=0"], "trainer.devices=0: Lightning's Trainer refuses it"),
    (TRAIN, ["trainer.devices=-2"], "trainer.devices=-2"),
    (TRAIN, ["trainer.precision=17"], "trainer.precision=17: Lightning's Trainer refuses it"),
    (TRAIN, ["+trainer.max_steps=-5"], "trainer.max_steps=-5"),
    (TRAIN, ["+trainer.strategy=ddp_spawnx"], "trainer.strategy='ddp_spawnx'"),
    (TRAIN, ["-m", "hydra/launcher=stacked", "trainer.devices=0", "seed=0,1"], "trainer.devices=0"),
    (TRAIN, ["callbacks/early_stopping=val_loss", "callbacks.early_stopping.patience=-1"], "patience=-1"),
    (TRAIN, ["callbacks.pictures.max_misclassified=-1"], "callbacks.pictures.max_misclassified=-1"),
    (TRAIN, ["callbacks.stop_on_nonfinite_loss.check_every_n_steps=0"], "check_every_n_steps=0"),
    (TRAIN, ["logger=null"], "logger=null"),
    (TRAIN, ["debug=verbose"], "debug/verbose"),
    # paths and checkpoints
    (TRAIN, ["paths.log_dir=/proc/digitlab_logs"], "paths.log_dir='/proc/digitlab_logs'"),
    (TRAIN, ["hydra.run.dir={text}/run"], "hydra.run.dir='{text}/run'"),
    (TRAIN, ["ckpt_path={missing}"], "ckpt_path='{missing}'"),
    (TRAIN, ["ckpt_path={text}"], "ckpt_path='{text}'"),
    (TRAIN, ["ckpt_path={mlp_ckpt}"], "does not fit this model"),
    (TRAIN, ["model=mlp", "model.net.hidden=64", "ckpt_path={mlp_ckpt}"], "net.1.weight is [8, 784]"),
    # a sweep is checked whole, whatever the launcher
    (TRAIN, ["-m", "optimizer.lr=0.5,-1"], "optimizer.lr=-1 is invalid"),
    (TRAIN, ["-m", "hydra/launcher=stacked", "optimizer.lr=0.5,-1"], "job #1 of this sweep"),
    (TRAIN, ["-m", "hydra/launcher=joblib", "seed=0,abc"], "seed='abc'"),
    # a value listed twice would train one job twice and count it as two runs
    (TRAIN, ["-m", "optimizer.lr=0.1,0.1"], "optimizer.lr=0.1,0.1 lists 0.1 more than once"),
    (TRAIN, ["-m", "optimizer.lr=0.1,0.10"], "optimizer.lr=0.1,0.10 lists 0.1 more than once"),
    (TRAIN, ["-m", "hydra/launcher=stacked", "seed=0,1,0"], "seed=0,1,0 lists 0 more than once"),
    (TRAIN, ["-m", "model=mlp,linear,mlp"], "model=mlp,linear,mlp lists 'mlp' more than once"),
    # a value Hydra's grammar cannot read: named, with the quoted form that works
    (
        TRAIN,
        ["ckpt_path={tmp}/0_optimizer.lr=0.1,seed=0/last.ckpt"],
        "ckpt_path='{tmp}/0_optimizer.lr=0.1,seed=0/last.ckpt'",
    ),
    (TRAIN, ["paths.log_dir={tmp}/données"], "paths.log_dir='{tmp}/données'"),
    (TRAIN, ["ckpt_path={tmp}/runs[1]/last.ckpt"], "ckpt_path='{tmp}/runs[1]/last.ckpt'"),
    (
        TRAIN,
        ["-m", "hydra/launcher=stacked", "hydra.launcher.max_stack=0", "seed=0,1"],
        "hydra.launcher.max_stack=0",
    ),
    (
        TRAIN,
        ["-m", "hydra/launcher=stacked", "hydra.launcher.max_stack=many", "seed=0,1"],
        "max_stack='many'",
    ),
    (
        TRAIN,
        ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=0", "seed=0,1"],
        "hydra.launcher.n_jobs=0",
    ),
    (TRAIN, ["-m", "model=mlp", "model.net.hidden=8,0", "seed=0,1"], "model.net.hidden=0"),
    (TRAIN, ["hparams_search=mlp", "model.net.hidden=choice(16,0)"], "model.net.hidden=0"),
    (TRAIN, ["hparams_search=mlp", "model.net.hidden=choice(16,32,16)"], "lists 16 more than once"),
    (TRAIN, ["hparams_search=mlp", "optimizer.momentum=-1"], "optimizer.momentum=-1"),
    (TRAIN, ["hparams_search=mlp", "optimizer.lr=interval(-1,1)"], "optimizer.lr=-1.0 is invalid"),
    (TRAIN, ["hparams_search=linear_lr", "hydra.sweeper.n_trials=0"], "hydra.sweeper.n_trials=0"),
    (TRAIN, ["hparams_search=linear_lr", "hydra.sweeper.n_jobs=many"], "hydra.sweeper.n_jobs='many'"),
    (TRAIN, ["hparams_search=linear_lr", "hydra.sweeper.direction=sideways"], "sideways"),
    # sampler and pruner settings: built once before the study is created
    (
        TRAIN,
        ["hparams_search=linear_lr", "hydra.sweeper.sampler.seed=99999999999"],
        "hydra.sweeper.sampler.seed=99999999999",
    ),
    (TRAIN, ["hparams_search=linear_lr", "hydra.sweeper.sampler.seed=-1"], "hydra.sweeper.sampler.seed=-1"),
    (
        TRAIN,
        [
            "hparams_search=linear_lr",
            "hydra/sweeper/pruner=median",
            "hydra.sweeper.pruner.n_startup_trials=-1",
        ],
        "hydra.sweeper.pruner.n_startup_trials=-1",
    ),
    (
        TRAIN,
        [
            "hparams_search=linear_lr",
            "hydra/sweeper/sampler=random",
            "hydra.sweeper.sampler.n_startup_trials=3",
        ],
        "hydra.sweeper.sampler.n_startup_trials=3 is not a setting of RandomSampler",
    ),
    (
        TRAIN,
        ["hparams_search=linear_lr", "hydra.sweeper.storage=postgresql+pg8000://u@127.0.0.1:1/db"],
        "pg8000",
    ),
    (
        TRAIN,
        ["hparams_search=linear_lr", "hydra.sweeper.storage=postgresql://u:pw@127.0.0.1:1/db"],
        "storage=postgresql://u@127.0.0.1:1/db",  # the password never shown; with or without its driver
    ),
    (TRAIN, ["hparams_search=linear_lr", "hydra.sweeper.storage=nosuchdb://x/y"], "nosuchdb://"),
    (
        TRAIN,
        ["hparams_search=linear_lr", "hydra.sweeper.storage=postgresql://u:pw@host:notaport/db"],
        "not a database URL",
    ),
    # digitlab-eval
    (EVAL, [], "usage: digitlab-eval"),
    (EVAL, ["ckpt_path={missing}"], "ckpt_path='{missing}'"),
    (EVAL, ["ckpt_path={text}"], "ckpt_path='{text}'"),
    (EVAL, ["ckpt_path={mlp_ckpt}", "model.net.hidden=64"], "net.1.weight is [8, 784]"),
    (EVAL, ["ckpt_path={mlp_ckpt}", "model.net.hidden=64"], "model.net.hidden=64 changes the model"),
    (EVAL, ["ckpt_path={mlp_ckpt}", "model=linear"], "model=linear chooses another model"),
    (EVAL, ["ckpt_path={mlp_ckpt}", "optimizer=adam"], "optimizer=adam chooses another optimizer"),
    (EVAL, ["ckpt_path={mlp_ckpt}", "data.batch_size=0"], "data.batch_size=0"),
    (EVAL, ["ckpt_path={mlp_ckpt}", "model.net.hiden=8"], "model.net.hiden"),
    # digitlab-predict
    (PREDICT, [], "usage: digitlab-predict"),
    (PREDICT, ["ckpt_path={mlp_ckpt}", "{empty}"], "'{empty}' holds no image"),
    (PREDICT, ["ckpt_path={mlp_ckpt}", "{empty}/*.png"], "'{empty}/*.png' holds no image"),
    (PREDICT, ["ckpt_path={text}", "{image}"], "ckpt_path='{text}'"),
    (PREDICT, ["ckpt_path={mlp_ckpt}", "invert=maybe", "{image}"], "invert='maybe'"),
    (PREDICT, ["ckpt_path={mlp_ckpt}", "invrt=true", "{image}"], "'invrt=true' is neither an option"),
    (PREDICT, ["ckpt_path={mlp_ckpt}", "{tmp}/digit=3.png"], "'{tmp}/digit=3.png' is neither an option"),
    (PREDICT, ["ckpt_path={mlp_ckpt}", "--device", "cuda", "{image}"], "'--device' is neither an option"),
    # digitlab-compare
    (COMPARE, ["{missing}"], "{missing}"),
    (COMPARE, ["{empty}"], "{empty}"),
    (COMPARE, ["{run}", "--metric", "val/accc"], "val/accc"),
    (COMPARE, ["{run}", "--out", "{text}"], "--out '{text}'"),
    (COMPARE, ["{run}", "--out", "{mine}"], "compare.md"),
    (COMPARE, [], "usage: digitlab-compare"),
    (COMPARE, ["--study", "{missing}"], "--study '{missing}' is not an Optuna study"),
    (COMPARE, ["--study", "{empty}"], "--study '{empty}' is not an Optuna study"),
    # digitlab-dashboard
    (DASHBOARD, ["{empty}"], "'{empty}' is not an Optuna study"),
    (DASHBOARD, ["{text}"], "is not an Optuna journal"),
    (DASHBOARD, ["--port", "0", "{empty}"], "--port: 0"),
    (DASHBOARD, ["--port", "abc"], "--port"),
    (DASHBOARD, ["--host", "no-such-host.invalid", "{empty}"], "no-such-host.invalid"),
]


def _entry(program: str):
    if program == TRAIN:
        from digitlab.cli.train import cli

        return cli
    module = {EVAL: "evaluate", PREDICT: "predict", COMPARE: "compare", DASHBOARD: "dashboard"}[program]
    return __import__(f"digitlab.cli.{module}", fromlist=["main"]).main


def run_entry(program: str, args: list[str], capfd, monkeypatch, cwd: Path) -> tuple[int, str]:
    """Run the console script `digitlab-<program> args` in this process: its exit code and output."""
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    # As in a new process: no console handler left by an earlier case on a stream pytest has since closed.
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(getattr(handler, "stream", None), "closed", False):
            root.removeHandler(handler)
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", [f"digitlab-{program}", *args])
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.setenv("PGPASSWORD", "")  # recorded, so that a password a case moves there is removed after
    monkeypatch.delenv("PGPASSWORD")
    capfd.readouterr()
    try:
        code = _entry(program)(*([] if program == TRAIN else [args]))
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        GlobalHydra.instance().clear()
    out, err = capfd.readouterr()
    return int(code or 0), out + err


def listing(folder: Path) -> dict[str, str]:
    """Every file and folder under `folder` with a digest of its bytes: what a case must leave unchanged."""
    found = {}
    for path in sorted(folder.rglob("*")):
        relative = str(path.relative_to(folder))
        found[relative] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return found


@pytest.fixture(scope="module")
def places(sample_root, tmp_path_factory) -> dict[str, str]:
    """Real things for the cases to point at: an mlp run's checkpoint, a text file, an empty folder..."""
    base = tmp_path_factory.mktemp("places")
    overrides = tiny_overrides(sample_root, base, "model=mlp", "model.net.hidden=8", "trainer.max_epochs=1")
    cli(*overrides, f"hydra.run.dir={base / 'run'}", cwd=base)
    (base / "empty").mkdir()
    (base / "notes.txt").write_text("not a checkpoint\n")
    (base / "mine").mkdir()
    (base / "mine" / "compare.md").write_text("my own table\n")
    image = base / "digit.png"
    Image.new("L", (28, 28)).save(image)
    # Datasets a hurried user points data.root at: each refused before any folder is made.
    jpeg = shutil.copytree(sample_root, base / "with_jpeg")
    Image.new("L", (28, 28)).save(jpeg / "train" / "3" / "0.png", format="JPEG")  # a JPEG named .png
    empty_class = shutil.copytree(sample_root, base / "empty_class")
    for png in (empty_class / "train" / "3").iterdir():
        png.unlink()
    extra_class = shutil.copytree(sample_root, base / "extra_class")
    (extra_class / "train" / "8").mkdir()
    Image.new("L", (28, 28)).save(extra_class / "train" / "8" / "0.png")
    wrong_size = shutil.copytree(sample_root, base / "wrong_size")
    Image.new("L", (32, 32)).save(
        wrong_size / "valid" / "7" / next((wrong_size / "valid" / "7").iterdir()).name
    )
    return {
        "mlp_ckpt": str(base / "run" / "checkpoints" / "last.ckpt"),
        "run": str(base / "run"),
        "text": str(base / "notes.txt"),
        "empty": str(base / "empty"),
        "mine": str(base / "mine"),
        "image": str(image),
        "missing": str(base / "no_such_thing"),
        "jpeg_root": str(jpeg),
        "empty_class_root": str(empty_class),
        "extra_class_root": str(extra_class),
        "wrong_size_root": str(wrong_size),
    }


@pytest.mark.parametrize(("program", "args", "named"), CASES, ids=[f"{c[0]}:{' '.join(c[1])}" for c in CASES])
def test_a_bad_input_is_one_clear_paragraph_before_any_work(
    program, args, named, places, sample_root, tmp_path, capfd, monkeypatch
):
    fill = {**places, "tmp": str(tmp_path)}
    args = [a.format(**fill) for a in args]
    if program == TRAIN:  # the case's own values come last, so they win
        flags = [a for a in args if a.startswith("-")]
        args = [*flags, *tiny_overrides(sample_root, tmp_path)[:4], *(a for a in args if a not in flags)]
    watched = [Path(places["run"]).parent, sample_root]
    before = [listing(folder) for folder in watched]
    code, output = run_entry(program, args, capfd, monkeypatch, tmp_path)
    usage = "usage:" in output  # argparse's own (or the CLI's usage line): exit 2, as argparse exits
    assert code == (2 if usage else 1), output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert named.format(**fill) in output, output[-3000:]
    assert not (tmp_path / "logs").exists() and not (tmp_path / "data").exists(), "nothing is written"
    assert [listing(folder) for folder in watched] == before, "the user's files are unchanged"


def test_the_table_covers_every_entry_point_and_launcher():
    assert len(CASES) >= 60
    assert {c[0] for c in CASES} == {TRAIN, EVAL, PREDICT, COMPARE, DASHBOARD}
    typed = " ".join(" ".join(c[1]) for c in CASES)
    for launcher in ("stacked", "joblib"):
        assert f"hydra/launcher={launcher}" in typed
    assert "hparams_search=" in typed and "-m" in typed


def test_the_python_api_refuses_before_any_work(sample_root, tmp_path):
    from digitlab.api import run
    from digitlab.errors import ConfigError

    with pytest.raises(ConfigError, match="seed='abc' is invalid"):
        run([*tiny_overrides(sample_root, tmp_path), "seed=abc"], output_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match="optimizer=nesterov"):
        run(["optimizer=nesterov"], output_dir=tmp_path / "run")
    assert os.listdir(tmp_path) == []
