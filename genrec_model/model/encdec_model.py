"""Encoder-decoder SID recommender (TIGER-style) on a T5 backbone, and its StepModel adapter.

The encoder reads a user's history as `train_data.history_tokens` (`BOS sid(i1) .. sid(in)`, the last
`max_history` items); the decoder reads `BOS t0 .. t(L-2)` and predicts the next item's SID tokens
`t0 .. t(L-1)`, one training example per target item (TIGER). Each target position is scored by a
softmax over its own SID level's token range, as `trainer.sequence_loss` does with softmax groups.

Backbone: `transformers.T5ForConditionalGeneration` built from a `T5Config` (random init, nothing is
downloaded). T5 has relative position biases and no absolute positions, so left and right padding of
the history give the same encoding and the StepModel's `position_ids` are not needed. Input and
output embeddings are tied (T5 then scales decoder outputs by d_model**-0.5 before the head).

`EncDecStepModel` serves `beam_search.decode`: prefill encodes each history once and runs the decoder
on BOS; step feeds one decoder token, reusing the decoder self-attention K/V of earlier tokens and the
cross-attention K/V of the history computed at prefill (HF `EncoderDecoderCache`, nothing recomputed);
reorder gathers rows (also the B users -> B * beam expansion).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import T5Config, T5ForConditionalGeneration
from transformers.cache_utils import DynamicCache, EncoderDecoderCache

from genrec_model.model.sid_vocab import BOS, EOS, PAD


@dataclass(frozen=True)
class EncDecConfig:
    vocab_size: int
    n_enc_layer: int = 4
    n_dec_layer: int = 4
    n_head: int = 6
    d_kv: int = 64  # per-head size; T5 allows n_head * d_kv (384) != d_model
    d_model: int = 128
    d_ff: int = 1024
    dropout: float = 0.1
    rel_buckets: int = 32  # T5 relative-position buckets
    rel_max_distance: int = 128

    def t5_config(self) -> T5Config:
        return T5Config(vocab_size=self.vocab_size, d_model=self.d_model, d_kv=self.d_kv, d_ff=self.d_ff,
                        num_layers=self.n_enc_layer, num_decoder_layers=self.n_dec_layer, num_heads=self.n_head,
                        relative_attention_num_buckets=self.rel_buckets,
                        relative_attention_max_distance=self.rel_max_distance, dropout_rate=self.dropout,
                        feed_forward_proj="relu", tie_word_embeddings=True, use_cache=False,
                        pad_token_id=PAD, eos_token_id=EOS, decoder_start_token_id=BOS)

    def to_dict(self) -> dict:
        return asdict(self)


class EncDecModel(nn.Module):
    def __init__(self, cfg: EncDecConfig):
        super().__init__()
        self.cfg = cfg
        self.t5 = T5ForConditionalGeneration(cfg.t5_config())
        self.out_scale = cfg.d_model ** -0.5 if self.t5.config.scale_decoder_outputs else 1.0

    @property
    def head_weight(self) -> torch.Tensor:
        return self.t5.lm_head.weight  # (V, D), tied to the input embedding

    def encode(
        self,
        input_ids: torch.Tensor,  # (B, S) history tokens, any padding side
        attention_mask: torch.Tensor,  # (B, S), 1 = real token
    ) -> torch.Tensor:
        return self.t5.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, S, D)

    def decode(
        self,
        decoder_input_ids: torch.Tensor,  # (B, T) new decoder tokens (all of them when cache is None)
        enc: torch.Tensor,  # (B, S, D) encoder output
        enc_mask: torch.Tensor,  # (B, S)
        cache: EncoderDecoderCache | None = None,  # K/V of earlier decoder tokens and of `enc`; updated in place
    ) -> torch.Tensor:
        """Decoder outputs (B, T, D), already scaled so that `h @ head_weight.T` are T5's logits."""
        out = self.t5.decoder(input_ids=decoder_input_ids, encoder_hidden_states=enc, encoder_attention_mask=enc_mask,
                              cache=cache, use_cache=cache is not None)
        return out.last_hidden_state * self.out_scale

    @staticmethod
    def decoder_inputs(targets: torch.Tensor) -> torch.Tensor:
        """(B, L) target SID tokens -> (B, L) decoder inputs `BOS t0 .. t(L-2)`."""
        return torch.cat([torch.full_like(targets[:, :1], BOS), targets[:, :-1]], dim=1)

    def forward(self, input_ids, attention_mask, decoder_input_ids) -> torch.Tensor:
        """Full-vocabulary logits (B, T, V) for every decoder position (teacher forcing)."""
        h = self.decode(decoder_input_ids, self.encode(input_ids, attention_mask), attention_mask)
        return h @ self.head_weight.T

    def level_loss(
        self,
        input_ids: torch.Tensor,  # (B, S)
        attention_mask: torch.Tensor,  # (B, S)
        targets: torch.Tensor,  # (B, L) next item's SID tokens
        level_ranges: Sequence[tuple[int, int]],  # [start, end) token ids of each level (SidVocab.level_range)
        label_smoothing: float = 0.0,
    ) -> torch.Tensor:
        """Mean cross entropy over the B * L target tokens, each softmax over its own level's range."""
        enc = self.encode(input_ids, attention_mask)  # (B, S, D)
        h = self.decode(self.decoder_inputs(targets), enc, attention_mask)  # (B, L, D)
        total = h.new_zeros(())
        for lv, (lo, hi) in enumerate(level_ranges):
            logits = h[:, lv] @ self.head_weight[lo:hi].T  # (B, hi - lo)
            ce = F.cross_entropy(logits, targets[:, lv] - lo, reduction="sum", label_smoothing=label_smoothing)
            total = total + ce
        return total / targets.numel()

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


@dataclass(frozen=True)
class EncDecState:
    cache: EncoderDecoderCache  # per layer: self-attn K/V (N, H, t, d_kv) of the decoded tokens,
    #                             cross-attn K/V (N, H, S, d_kv) of the history
    enc: torch.Tensor  # (N, S, D) encoder output of each row's history
    enc_mask: torch.Tensor  # (N, S)


class EncDecStepModel:
    """StepModel (beam_search.py) over an EncDecModel: numpy in, numpy out.

    States are single-use: `reorder` and `step` update the HF cache in place and hand it on (as HF
    generate does); the beam search never reads a state again after passing it on.
    """

    def __init__(self, model: EncDecModel, device: str | torch.device = "cpu"):
        self.model = model.eval()
        self.device = torch.device(device)
        self.vocab_size = model.cfg.vocab_size

    def _t(self, a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a), dtype=torch.long, device=self.device)

    def _logits(self, h: torch.Tensor) -> np.ndarray:
        return (h[:, -1] @ self.model.head_weight.T).float().cpu().numpy()  # (N, V)

    @torch.no_grad()
    def prefill(self, input_ids: np.ndarray, attention_mask: np.ndarray, position_ids: np.ndarray | None = None):
        """Histories (B, S) -> logits (B, V) of the first SID token, state; position_ids are unused (T5)."""
        ids, mask = self._t(input_ids), self._t(attention_mask)
        enc = self.model.encode(ids, mask)  # (B, S, D)
        cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        h = self.model.decode(torch.full_like(ids[:, :1], BOS), enc, mask, cache)  # (B, 1, D)
        return self._logits(h), EncDecState(cache, enc, mask)

    @torch.no_grad()
    def step(self, tokens: np.ndarray, state: EncDecState):
        """tokens (N,) appended to each row's decoder input -> logits (N, V) of the next SID token."""
        h = self.model.decode(self._t(tokens).reshape(-1, 1), state.enc, state.enc_mask, state.cache)  # (N, 1, D)
        return self._logits(h), state

    def reorder(self, state: EncDecState, rows: np.ndarray) -> EncDecState:
        r = self._t(rows)
        state.cache.reorder_cache(r)
        return EncDecState(state.cache, state.enc[r], state.enc_mask[r])
