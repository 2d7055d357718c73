"""SASRec (Kang & McAuley 2018): self-attentive sequential recommendation.

Item + learned position embeddings, causal self-attention blocks, and the item
embedding table reused as the output layer (scores = hidden @ item_emb^T).
Trained with full-softmax cross-entropy over all items (RecBole's `loss_type=CE`).

Sequences are right-padded with -1: real items start at position 0, so a causal
mask alone keeps padding out of every real position's context.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from genrec_model.baselines.config import SASRecConfig


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: SASRecConfig):
        super().__init__()
        if cfg.d_model % cfg.n_head:
            raise ValueError("d_model must be divisible by n_head")
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.attn_dropout = cfg.dropout
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = self.qkv(x).split(D, dim=2)  # 3 x (B, T, D)
        q, k, v = (t.view(B, T, self.n_head, D // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, H, T, Dh)
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.attn_dropout if self.training else 0.0
        )  # (B, H, T, Dh)
        y = y.transpose(1, 2).reshape(B, T, D)  # (B, T, D)
        return self.resid_dropout(self.proj(y))


class FeedForward(nn.Module):
    def __init__(self, cfg: SASRecConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.d_model, cfg.d_ff)
        self.proj = nn.Linear(cfg.d_ff, cfg.d_model)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    def __init__(self, cfg: SASRecConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.d_model)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.d_model)
        self.ff = FeedForward(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.ff(self.ln_2(x))


class SASRec(nn.Module):
    def __init__(self, cfg: SASRecConfig):
        super().__init__()
        self.cfg = cfg
        # row 0 is padding; item i lives in row i + 1
        self.item_emb = nn.Embedding(cfg.n_items + 1, cfg.d_model, padding_idx=0)
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):  # GPT-2 scaled init of residual projections
                nn.init.normal_(p, mean=0.0, std=cfg.init_std / math.sqrt(2 * cfg.n_layer))

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=self.cfg.init_std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        """items: (B, T) item indices, right-padded with -1 -> hidden states (B, T, D)."""
        B, T = items.shape
        if T > self.cfg.max_len:
            raise ValueError(f"sequence length {T} exceeds max_len {self.cfg.max_len}")
        pos = torch.arange(T, device=items.device)  # (T,)
        x = self.item_emb(items + 1) + self.pos_emb(pos)  # (B, T, D)
        x = self.drop(x)
        for block in self.blocks:
            x = block(x)  # (B, T, D)
        return self.ln_f(x)

    def item_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden (..., D) -> scores over all items (..., n_items), using the shared item table."""
        return hidden @ self.item_emb.weight[1:].T

    def last_hidden(self, items: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Hidden state after each sequence's last real item: (B, T), (B,) -> (B, D)."""
        h = self.forward(items)  # (B, T, D)
        return h[torch.arange(items.shape[0], device=items.device), lengths - 1]  # (B, D)
