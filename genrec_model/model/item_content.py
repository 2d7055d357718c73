"""Content-based item tokens: the item level of a content model is computed from each item's text
embedding (SeqModel `item_content_dim`), so the model scores any item of tonight's catalog, seen in
training or not. `materialize` turns such a model into a plain token-table model for one catalog:
what the ONNX export writes and the decode path runs.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from genrec_model.model.seq_model import NO_ITEM_LOGIT, SeqModel
from genrec_model.model.sid_vocab import SidVocab


def item_level(vocab: SidVocab) -> tuple[int, int]:
    """[start, end) token ids of the item level (the SIDs' last level)."""
    return vocab.level_range(vocab.n_levels - 1)


def content_by_token(codes: np.ndarray, item_content: np.ndarray, vocab: SidVocab) -> tuple[np.ndarray, np.ndarray]:
    """Per item-level token: its item's content vector (zeros where no item) and whether it names an item."""
    size = vocab.level_sizes[-1]
    content = np.zeros((size, item_content.shape[1]), dtype=np.float32)
    valid = np.zeros(size, dtype=bool)
    tokens = np.asarray(codes)[:, -1].astype(np.int64)
    content[tokens] = item_content
    valid[tokens] = True
    return content, valid


def set_catalog(model: SeqModel, vocab: SidVocab, codes: np.ndarray, item_content: np.ndarray) -> None:
    """Point a content model at a catalog (codes (N, L), content (N, item_content_dim))."""
    content, valid = content_by_token(codes, item_content, vocab)
    model.set_items(torch.from_numpy(content), torch.from_numpy(valid))


@torch.no_grad()
def materialize(model: SeqModel, vocab: SidVocab, codes: np.ndarray, item_content: np.ndarray) -> SeqModel:
    """A plain SeqModel (token table + constant logit bias) equal to `model` on this catalog, whose item
    level may be larger than in training (items issued since). Non-item tokens keep their ids."""
    lo, hi = item_level(vocab)
    if model.cfg.item_tokens[0] != lo:
        raise ValueError(f"item level starts at {lo} in this vocabulary, at {model.cfg.item_tokens[0]} in training: "
                         "the semantic levels changed (another codebook?)")
    content, valid = content_by_token(codes, item_content, vocab)
    items = model.item_embeddings(torch.from_numpy(content))
    items[~torch.from_numpy(valid)] = 0.0
    w = model.wte.weight
    bias = torch.zeros(vocab.vocab_size)
    bias[lo:hi][~torch.from_numpy(valid)] = NO_ITEM_LOGIT
    return plain_model(model.cfg, model.state_dict(), torch.cat([w[:lo], items, w[lo:]], 0), bias)


def plain_model(cfg, state: dict, table: torch.Tensor, bias: torch.Tensor) -> SeqModel:
    """A plain SeqModel (token table `table` (V, D), tied; constant logit bias (V,)) holding the other
    weights of `state` (a content model's or a plain model's state dict) -- what the export writes."""
    if not cfg.tie_weights:
        raise ValueError("plain_model needs tied input/output embeddings")
    item_tokens = cfg.item_tokens if cfg.item_query != "step" else (0, 0)  # the step-free item level needs it
    plain = SeqModel(replace(cfg, vocab_size=table.shape[0], item_content_dim=0, item_tokens=item_tokens,
                             item_codebooks=0, logit_bias=True))
    state = {k: v for k, v in state.items()
             if not k.startswith(("item_encoder.", "item_code_emb.", "lm_head."))
             and k not in ("wte.weight", "item_centroids", "logit_bias")}
    state["wte.weight"] = table
    state["logit_bias"] = bias
    plain.load_state_dict(state)
    return plain.eval()
