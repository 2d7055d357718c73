"""StepModel (docs/CONTRACTS.md) backed by a PyTorch SeqModel: numpy in, numpy out.

Used by tests and training-time validation; production decoding runs the ONNX graphs with the same
protocol (prefill -> step ... with a KV cache, reorder to gather beams).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from genrec_model.model.seq_model import SeqModel


@dataclass(frozen=True)
class StepState:
    past_k: torch.Tensor  # (n_layer, N, H, P, hd)
    past_v: torch.Tensor
    attention_mask: torch.Tensor  # (N, P) int64
    next_position: torch.Tensor  # (N,) int64, position id of the next token
    item_kv: tuple | None = None  # item_query="attend", after prefill: (k, v, mask) numpy (B, T, D), (B, T)


class TorchStepModel:
    """Also the fused decoder's protocol (decode/beam_search.py `_beam_search_fused`): `prefill_hidden` /
    `step_hidden` return final hidden states, `head_weight` / `head_bias` the output head and
    `item_query_tables` what an `item_query` "user"/"attend" model's item level needs (None for "step",
    decode/item_query.py)."""

    def __init__(self, model: SeqModel, device: str | torch.device = "cpu"):
        self.model = model.eval()
        self.device = torch.device(device)
        self.vocab_size = model.cfg.vocab_size
        self.n_head, self.layer_norm_eps = model.cfg.n_head, model.cfg.layer_norm_eps
        with torch.no_grad():
            w, b = model.head_weights()
            tables = model.item_query_tables()
        self.head_weight = np.ascontiguousarray(w.detach().float().cpu().numpy())
        self.head_bias = np.ascontiguousarray(b.detach().float().cpu().numpy())
        self.item_query_tables = None if tables is None else {
            k: np.ascontiguousarray(t.detach().float().cpu().numpy()) for k, t in tables.items()}

    def _t(self, a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a), dtype=torch.long, device=self.device)

    @torch.no_grad()
    def prefill(self, input_ids: np.ndarray, attention_mask: np.ndarray, position_ids: np.ndarray):
        ids, mask, pos = self._t(input_ids), self._t(attention_mask), self._t(position_ids)
        h, k, v = self.model.hidden(ids, attention_mask=mask, position_ids=pos)
        logits = self.model.logits(h[:, -1])  # (B, V): left padding puts every row's last token last
        return logits.float().cpu().numpy(), StepState(k, v, mask, pos[:, -1] + 1)

    @torch.no_grad()
    def prefill_hidden(self, input_ids: np.ndarray, attention_mask: np.ndarray, position_ids: np.ndarray):
        ids, mask, pos = self._t(input_ids), self._t(attention_mask), self._t(position_ids)
        h, k, v = self.model.hidden(ids, attention_mask=mask, position_ids=pos)
        item_kv = None
        if self.model.cfg.item_query == "attend":
            ik, iv = self.model.item_keys(h)
            item_kv = (ik.float().cpu().numpy(), iv.float().cpu().numpy(), np.asarray(attention_mask))
        return (np.ascontiguousarray(h[:, -1].float().cpu().numpy()),
                StepState(k, v, mask, pos[:, -1] + 1, item_kv))

    @torch.no_grad()
    def step_hidden(self, tokens: np.ndarray, state: StepState):
        ids = self._t(tokens).reshape(-1, 1)  # (N, 1)
        mask = torch.cat([state.attention_mask, torch.ones_like(ids)], dim=1)  # (N, P+1)
        h, k, v = self.model.hidden(ids, attention_mask=mask, position_ids=state.next_position.unsqueeze(1),
                                    past_k=state.past_k, past_v=state.past_v)
        return np.ascontiguousarray(h[:, -1].float().cpu().numpy()), StepState(k, v, mask, state.next_position + 1)

    @torch.no_grad()
    def step(self, tokens: np.ndarray, state: StepState):
        ids = self._t(tokens).reshape(-1, 1)  # (N, 1)
        mask = torch.cat([state.attention_mask, torch.ones_like(ids)], dim=1)  # (N, P+1)
        pos = state.next_position.unsqueeze(1)  # (N, 1)
        logits, k, v = self.model(ids, attention_mask=mask, position_ids=pos, past_k=state.past_k, past_v=state.past_v)
        return logits[:, -1].float().cpu().numpy(), StepState(k, v, mask, state.next_position + 1)

    def reorder(self, state: StepState, rows: np.ndarray) -> StepState:
        r = self._t(rows)
        return StepState(state.past_k[:, r], state.past_v[:, r], state.attention_mask[r], state.next_position[r])
