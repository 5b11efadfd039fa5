"""digitlab's SLURM launcher for Hydra (`hydra/launcher=slurm`): hydra-submitit-launcher's, made to survive a
real cluster. `slurm_launcher.py` is what Hydra discovers; `_impl.py` is imported when jobs are launched."""
