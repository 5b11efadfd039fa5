"""Lightning callbacks: what a run leaves behind beyond checkpoints (results, hparams, pictures)."""
