"""Trained-model artifacts: `<root>/<model_version>/` with the checkpoint, the item table the model
was trained on (item_id, index, codes), training curves, and after export an `onnx/` folder.
`<root>/LATEST` names the newest complete version.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch

from genrec_model.model.seq_model import SeqModel
from genrec_model.model.config import SeqModelConfig
from genrec_model.model.sid_vocab import SidVocab

CHECKPOINT = "checkpoint.pt"
ITEMS = "items.parquet"
MANIFEST = "train_manifest.json"
LATEST = "LATEST"


@dataclass
class ModelBundle:
    model: SeqModel
    vocab: SidVocab
    item_ids: np.ndarray   # (N,) item_id per item index
    codes: np.ndarray      # (N, L) SID codes per item index
    manifest: dict
    path: str


def save_model(root: str, version: str, model: SeqModel, vocab: SidVocab, item_ids: np.ndarray,
               codes: np.ndarray, manifest: dict) -> str:
    path = os.path.join(root, version)
    os.makedirs(path, exist_ok=True)
    torch.save({"model_config": asdict(model.cfg), "state_dict": model.state_dict()}, os.path.join(path, CHECKPOINT))
    pd.DataFrame({"item_id": item_ids, "index": np.arange(len(item_ids)),
                  "codes": [c.astype(np.int32) for c in codes]}).to_parquet(os.path.join(path, ITEMS))
    full = {"model_version": version, "vocab": vocab.to_dict(), **manifest}
    with open(os.path.join(path, MANIFEST), "w") as f:
        json.dump(full, f, indent=1, default=str)
    tmp = os.path.join(root, LATEST + ".tmp")
    with open(tmp, "w") as f:
        f.write(version)
    os.replace(tmp, os.path.join(root, LATEST))
    return path


def resolve_version(root: str, version: str = "") -> str:
    if version:
        return version
    try:
        with open(os.path.join(root, LATEST)) as f:
            return f.read().strip()
    except FileNotFoundError as e:
        raise FileNotFoundError(f"no trained model under {root}: run the `train` stage first") from e


def load_model(root: str, version: str = "") -> ModelBundle:
    version = resolve_version(root, version)
    path = os.path.join(root, version)
    try:
        with open(os.path.join(path, MANIFEST)) as f:
            manifest = json.load(f)
        ckpt = torch.load(os.path.join(path, CHECKPOINT), map_location="cpu", weights_only=True)
        items = pd.read_parquet(os.path.join(path, ITEMS)).sort_values("index")
    except FileNotFoundError as e:
        raise FileNotFoundError(f"model {version} at {path} is incomplete: {e}") from e
    model = SeqModel(SeqModelConfig(**ckpt["model_config"]))
    model.load_state_dict(ckpt["state_dict"])
    vocab = SidVocab.from_dict(manifest["vocab"])
    if vocab.vocab_size != model.cfg.vocab_size:
        raise ValueError(f"model {version}: vocab size {vocab.vocab_size} != checkpoint {model.cfg.vocab_size}")
    codes = np.stack(items["codes"].to_numpy()).astype(np.int64)
    return ModelBundle(model.eval(), vocab, items["item_id"].to_numpy(), codes, manifest, path)
