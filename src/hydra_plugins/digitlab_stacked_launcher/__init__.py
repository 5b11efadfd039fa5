"""digitlab's stacked launcher for Hydra (`hydra/launcher=stacked`): the jobs of a sweep that can share one
training loop train together as one vectorised model. `stacked_launcher.py` is what Hydra discovers;
`_impl.py` is imported when jobs are launched."""
