"""digitlab: fastbook chapter 4 (MNIST 3s vs 7s) as a Lightning + Hydra experiment framework.

Importing the package is cheap: torch, Lightning and Hydra load only in the modules that need them.
"""

__version__ = "0.1.0"
