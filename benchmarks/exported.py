"""What the benchmarks that replay the production decode path share: the exported model of
`recommend.model_version` with its decoder, and the leave-one-out examples of the lakehouse's users as item
indices of that export (`data/splits.py`; events of items outside the export are dropped)."""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
from deltalake import DeltaTable

from genrec_model.data.splits import split_sequence
from genrec_model.model.artifacts import read_export, read_export_items, read_model
from udfs.recommend_fns import build_decoder


def exported_decoder(cfg, split: str):
    """(model artifact, Decoder, item_ids, codes, seen) of the export that decodes `split` (1 thread, CPU)."""
    model = read_model(cfg.artifact_path("models"), cfg.recommend.model_version)
    onnx_dir = model.onnx_dir_for(split)
    ids, codes, seen = read_export_items(onnx_dir)
    dec = build_decoder(onnx_dir, ids, codes, model.max_history, 1, False, read_export(onnx_dir)["codebook_version"], seen)
    return model, dec, ids, codes, seen


def heldout_examples(cfg, item_ids: np.ndarray, max_history: int, splits=("valid", "test")) -> dict:
    """split -> (histories, targets (U,)) as indices into item_ids, users in user_id order."""
    index = pd.Series(np.arange(len(item_ids)), index=item_ids)
    inter = DeltaTable(os.path.join(cfg.lakehouse_root(), "interactions")).to_pandas()
    inter = inter[inter["item_id"].isin(index.index)].sort_values(["user_id", "seq_pos"])
    out = {name: ([], []) for name in splits}
    for _, g in inter.groupby("user_id", sort=True):
        _, valid, test = split_sequence(index[g["item_id"]].to_numpy(), max_history)
        for name, ex in (("valid", valid), ("test", test)):
            if name in out and ex is not None and len(ex.history):
                out[name][0].append(ex.history)
                out[name][1].append(ex.target)
    return {name: (h, np.asarray(t, dtype=np.int64)) for name, (h, t) in out.items()}
