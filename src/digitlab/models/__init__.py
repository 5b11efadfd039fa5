"""Models: one LightningModule (`ClassifierModule`) around small plain nets, and the pixel-similarity baseline."""
