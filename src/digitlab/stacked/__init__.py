"""Stacked trials: the jobs of a sweep that differ only in seed, MLP width, batch size and optimizer
hyperparameters trained together, one vectorised model in one Lightning fit (`hydra/launcher=stacked`), each leaving its own run dir."""
