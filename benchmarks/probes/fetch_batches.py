"""`python fetch_batches.py DATA_DIR`: the cached dataset's load time and the median time to iterate one
training and one validation epoch of batches (no model), as JSON."""

import json
import statistics
import sys
import time

from digitlab.data import MnistSampleDataModule

datamodule = MnistSampleDataModule(data_dir=sys.argv[1])
start = time.perf_counter()
datamodule.setup()
load = time.perf_counter() - start
train, valid = datamodule.train_dataloader(), datamodule.val_dataloader()
epochs = []
for _ in range(7):
    start = time.perf_counter()
    for _batch in train:
        pass
    for _batch in valid:
        pass
    epochs.append(time.perf_counter() - start)
print(json.dumps({"load_s": load, "fetch_epoch_s": statistics.median(epochs)}))
