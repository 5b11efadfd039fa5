"""The model group (`conf/model/`): one LightningModule (`ClassifierModule`) around small plain nets, and the pixel-similarity baseline."""
