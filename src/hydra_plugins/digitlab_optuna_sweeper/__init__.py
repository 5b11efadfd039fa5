"""digitlab's Optuna sweeper for Hydra (`hydra/sweeper=optuna`): current Optuna, pruning, persistent and
multi-worker studies. `optuna_sweeper.py` is what Hydra discovers; `_impl.py` is imported when a sweep starts."""
