"""Train a real-data model variant on the training stars of data/demo_real (ddpayne demo --real).
Usage: ME=0.01 BS=32 [TYPES=FG] OUT=/tmp python studies/real_training/train_variant.py NAME EPOCHS REGULARIZE(0/1) [label=D ...]
"""
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from ddpayne_core.model import TrainConfig
from ddpayne_core.pipeline import train_from_store
from ddpayne_core.real import RealDataConfig, training_meta

out = Path("data/demo_real"); name = sys.argv[1]; epochs = int(sys.argv[2]); reg = sys.argv[3] == "1"
dscale = {}
for kv in sys.argv[4:]:
    k, v = kv.split("="); dscale[k] = float(v)
cfg = RealDataConfig()
meta = pd.read_parquet(out / "labels.parquet")
train_meta = training_meta(meta, cfg)
types = __import__("os").environ.get("TYPES")   # e.g. FG: train on those spectral types only
if types:
    train_meta.loc[~train_meta["spectral_type"].isin(list(types)), [f"lasp_{l}" for l in cfg.label_names]] = np.nan
t0 = time.time()
model = train_from_store(out / "survey", f"{__import__('os').environ.get('OUT', '/tmp')}/{name}.pt", cfg.training_set(),
                         replace(TrainConfig(), epochs=epochs, regularize=reg, d_scale=dscale, model_error=float(__import__('os').environ.get('ME', 0)), batch_size=int(__import__('os').environ.get('BS', 512))), meta=train_meta)
print(name, "train time", time.time() - t0, "best valid per px", min(model.history["valid_chi2"]) / 3909)
