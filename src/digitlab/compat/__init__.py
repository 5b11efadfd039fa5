"""What digitlab needs from a library that the library offers no public API for: one module per library,
each workaround with why it is needed and its upstream issue (`Upstream:`), the library bounded in
pyproject.toml to the versions the tests ran on. Nothing else in `src/` reads, writes or patches a private
attribute of Lightning, Hydra, OmegaConf, Optuna, TensorBoard or submitit (tests/test_public_apis.py)."""
