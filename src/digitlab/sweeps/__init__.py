"""Hydra plugins and callbacks for multiruns: the sweep summary written when a multirun ends."""
