"""Trained-model checkpoints (torch): save a new version, load one back for export and evaluation.
The on-disk layout and the torch-free readers are in `genrec_model.model.artifacts`.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np
import torch

from genrec_model.model.artifacts import (CHECKPOINT, SERVING_CHECKPOINT, publish_latest, read_model,
                                          write_model_files)
from genrec_model.model.config import SeqModelConfig
from genrec_model.model.seq_model import SeqModel
from genrec_model.model.sid_vocab import SidVocab


@dataclass
class ModelBundle:
    model: SeqModel
    vocab: SidVocab
    item_ids: np.ndarray   # (N,) item_id per item index
    codes: np.ndarray      # (N, L) SID codes per item index
    manifest: dict
    path: str
    serving_model: SeqModel | None = None  # refit on every event, when trained with refit_for_serving


def save_model(root: str, version: str, model: SeqModel, vocab: SidVocab, item_ids: np.ndarray,
               codes: np.ndarray, manifest: dict, serving_model: SeqModel | None = None) -> str:
    """Write `<root>/<version>/` and point LATEST at it (last, so readers never see a partial version)."""
    path = os.path.join(root, version)
    os.makedirs(path, exist_ok=True)
    torch.save({"model_config": asdict(model.cfg), "state_dict": model.state_dict()}, os.path.join(path, CHECKPOINT))
    if serving_model is not None:
        torch.save({"model_config": asdict(serving_model.cfg), "state_dict": serving_model.state_dict()},
                   os.path.join(path, SERVING_CHECKPOINT))
    write_model_files(root, version, item_ids, codes, {"model_version": version, "vocab": vocab.to_dict(), **manifest})
    publish_latest(root, version)
    return path


def load_model(root: str, version: str = "") -> ModelBundle:
    art = read_model(root, version)
    model = _load_checkpoint(os.path.join(art.path, CHECKPOINT))
    vocab = art.vocab
    if vocab.vocab_size != model.cfg.vocab_size:
        raise ValueError(f"model {art.version}: vocab size {vocab.vocab_size} != checkpoint {model.cfg.vocab_size}")
    serving_path = os.path.join(art.path, SERVING_CHECKPOINT)
    serving = _load_checkpoint(serving_path) if os.path.exists(serving_path) else None
    item_ids, codes = art.items()
    return ModelBundle(model, vocab, item_ids, codes, art.manifest, art.path, serving)


def _load_checkpoint(path: str) -> SeqModel:
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    cfg = ckpt["model_config"]
    model = SeqModel(SeqModelConfig(**{**cfg, "item_tokens": tuple(cfg.get("item_tokens", (0, 0)))}))
    state = ckpt["state_dict"]
    if model.lm_head is None:  # checkpoints before the token-table refactor stored the tied head twice
        state = {k: v for k, v in state.items() if k != "lm_head.weight"}
    model.load_state_dict(state)
    return model.eval()
