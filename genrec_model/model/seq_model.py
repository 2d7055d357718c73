"""Decoder-only transformer over SID tokens, GPT-2 architecture (nanoGPT style).

Learned token + position embeddings, pre-LayerNorm blocks, GELU (tanh) MLP, final LayerNorm, LM head
tied to the token embedding. `hf_compat.to_hf_gpt2` loads these weights into
`transformers.GPT2LMHeadModel` with identical logits.

KV cache is explicit: `past_k`/`past_v` are tensors (n_layer, B, n_head, P, head_dim) so the same
forward exports to ONNX (prefill and step graphs, docs/CONTRACTS.md).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from genrec_model.model.config import SeqModelConfig


# Logit of an item token that names no item (finite, so differences stay defined in parity checks;
# exp() of it is exactly 0 in float32).
NO_ITEM_LOGIT = -1e9


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: SeqModelConfig):
        super().__init__()
        assert cfg.d_model % cfg.n_head == 0
        self.n_head = cfg.n_head
        self.head_dim = cfg.head_dim
        self.c_attn = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.c_proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.attn_dropout = cfg.dropout
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(
        self,
        x: torch.Tensor,  # (B, T, D)
        bias: torch.Tensor | None,  # (B, 1, T, P+T) additive mask, None = plain causal, no cache
        past_k: torch.Tensor | None,  # (B, H, P, hd)
        past_v: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, T, D = x.shape
        q, k, v = self.c_attn(x).split(D, dim=2)
        q = q.view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, H, T, hd)
        k = k.view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        v = v.view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        if past_k is not None:
            k = torch.cat([past_k, k], dim=2)  # (B, H, P+T, hd)
            v = torch.cat([past_v, v], dim=2)
        drop = self.attn_dropout if self.training else 0.0
        if bias is None:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=drop, is_causal=True)
        else:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.head_dim)) + bias  # (B, H, T, P+T)
            att = F.dropout(torch.softmax(att, dim=-1), p=drop, training=self.training)
            y = att @ v  # (B, H, T, hd)
        y = y.transpose(1, 2).contiguous().view(B, T, D)
        return self.resid_dropout(self.c_proj(y)), k, v

    def shared_prefix(self, x, bias_p, prefix_k, prefix_v, suffix_k, suffix_v):
        """One decode step for N = B users x W beams rows (row = user * W + beam), eval only: x (N, 1, D)
        attends to its user's history KV `prefix_k/v` (B, H, T, hd) (stored once per user, additive mask
        `bias_p` (B, 1, 1, T)) and its own decoded tokens' KV `suffix_k/v` (N, H, S, hd). Same softmax as
        `forward` over the concatenated keys; returns (out (N, 1, D), suffix_k/v with this token appended)."""
        N, _, D = x.shape
        B, T = prefix_k.shape[0], prefix_k.shape[2]
        H, hd = self.n_head, self.head_dim
        scale = 1.0 / math.sqrt(hd)
        q, k, v = self.c_attn(x).split(D, dim=2)  # (N, 1, D) each
        sk = torch.cat([suffix_k, k.reshape(N, H, 1, hd)], dim=2)  # (N, H, S+1, hd)
        sv = torch.cat([suffix_v, v.reshape(N, H, 1, hd)], dim=2)
        qb = q.reshape(B, -1, H, hd).transpose(1, 2)  # (B, H, W, hd)
        att_p = (qb @ prefix_k.transpose(-2, -1)) * scale + bias_p  # (B, H, W, T)
        att_s = (q.reshape(N, H, 1, hd) @ sk.transpose(-2, -1)) * scale  # (N, H, 1, S+1)
        att_s = att_s.reshape(B, -1, H, sk.shape[2]).transpose(1, 2)  # (B, H, W, S+1)
        att = torch.softmax(torch.cat([att_p, att_s], dim=-1), dim=-1)
        y_p = att[..., :T] @ prefix_v  # (B, H, W, hd)
        p_s = att[..., T:].transpose(1, 2).reshape(N, H, 1, sk.shape[2])  # (N, H, 1, S+1)
        y_s = (p_s @ sv).reshape(B, -1, H, hd).transpose(1, 2)  # (B, H, W, hd)
        y = (y_p + y_s).transpose(1, 2).reshape(N, 1, D)
        return self.c_proj(y), sk, sv


class MLP(nn.Module):
    def __init__(self, cfg: SeqModelConfig):
        super().__init__()
        self.c_fc = nn.Linear(cfg.d_model, cfg.d_ff)
        self.c_proj = nn.Linear(cfg.d_ff, cfg.d_model)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class Block(nn.Module):
    def __init__(self, cfg: SeqModelConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, bias, past_k, past_v):
        a, k, v = self.attn(self.ln_1(x), bias, past_k, past_v)
        x = x + a
        x = x + self.mlp(self.ln_2(x))
        return x, k, v

    def shared_prefix(self, x, bias_p, prefix_k, prefix_v, suffix_k, suffix_v):
        a, k, v = self.attn.shared_prefix(self.ln_1(x), bias_p, prefix_k, prefix_v, suffix_k, suffix_v)
        x = x + a
        x = x + self.mlp(self.ln_2(x))
        return x, k, v


class SeqModel(nn.Module):
    """Token table layout: `wte` holds every token's embedding, except that a content model
    (`cfg.item_content_dim > 0`) computes the item level's rows [lo, hi) from `item_content` with
    `item_encoder` and keeps only the other rows in `wte`. `token_table()` is the full (V, D) table,
    used for the inputs and (tied) for the output logits."""

    def __init__(self, cfg: SeqModelConfig):
        super().__init__()
        if cfg.vocab_size <= 0:
            raise ValueError("SeqModelConfig.vocab_size must be set (fit_generator derives it from the SIDs)")
        self.cfg = cfg
        lo, hi = cfg.item_tokens
        n_items = hi - lo if cfg.item_content_dim else 0
        if cfg.item_content_dim and not (cfg.tie_weights and 0 < lo < hi <= cfg.vocab_size):
            raise ValueError(f"content item embeddings need tied weights and an item token range, got {cfg}")
        self.wte = nn.Embedding(cfg.vocab_size - n_items, cfg.d_model)
        self.wpe = nn.Embedding(cfg.max_positions, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.h = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)])
        self.ln_f = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.lm_head = None
        if cfg.item_content_dim:
            if not (cfg.item_text_mlp or cfg.item_codebooks):
                raise ValueError("a content item encoder needs item_text_mlp and/or item_codebooks")
            if cfg.item_text_mlp:
                self.item_encoder = nn.Sequential(nn.Linear(cfg.item_content_dim, cfg.d_model),
                                                  nn.GELU(approximate="tanh"), nn.Linear(cfg.d_model, cfg.d_model))
            if cfg.item_codebooks:
                if cfg.item_content_dim % cfg.item_codebooks:
                    raise ValueError(f"item_codebooks={cfg.item_codebooks} must divide the content width "
                                     f"{cfg.item_content_dim}")
                k, m = cfg.item_codebook_size, cfg.item_codebooks
                self.item_code_emb = nn.Embedding(m * k, cfg.d_model)
                # the quantizer is part of the model (fit on the training catalog, applied to new items)
                self.register_buffer("item_centroids", torch.zeros(m, k, cfg.item_content_dim // m))
                self.register_buffer("item_codes", torch.zeros(n_items, m, dtype=torch.long), persistent=False)
                self.register_buffer("code_offsets", torch.arange(m) * k, persistent=False)
            # content per item token and -inf logit bias for tokens that name no item: data, not weights
            self.register_buffer("item_content", torch.zeros(n_items, cfg.item_content_dim), persistent=False)
            self.register_buffer("item_bias", torch.zeros(n_items), persistent=False)
        elif not cfg.tie_weights:
            self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.logit_bias:
            self.register_buffer("logit_bias", torch.zeros(cfg.vocab_size))
        self.item_shift = None
        if cfg.item_query != "step":
            if not 0 < cfg.item_tokens[0] < cfg.item_tokens[1] <= cfg.vocab_size:
                raise ValueError(f"item_query={cfg.item_query!r} needs the item token range (item_tokens), "
                                 f"got {cfg.item_tokens}")
            self.item_shift = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        if cfg.item_query == "attend":
            self.item_attn_q = nn.Linear(cfg.d_model, cfg.d_model)  # from the prefix token's embedding
            self.item_attn_kv = nn.Linear(cfg.d_model, 2 * cfg.d_model)  # from the history's final states
            self.item_attn_o = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
            if cfg.item_read_user:
                self.item_attn_uq = nn.Linear(cfg.d_model, cfg.d_model, bias=False)  # from the user state
        self.item_mlp = None
        if cfg.item_query_mlp:
            self.item_ln = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
            self.item_mlp = nn.Sequential(nn.Linear(cfg.d_model, cfg.item_query_mlp), nn.GELU(approximate="tanh"),
                                          nn.Linear(cfg.item_query_mlp, cfg.d_model))
        self._table_cache: torch.Tensor | None = None
        self.apply(self._init_weights)
        if cfg.item_content_dim and cfg.item_codebooks:  # a sum of M codes starts at the scale of one token
            nn.init.normal_(self.item_code_emb.weight, mean=0.0, std=0.02 / math.sqrt(cfg.item_codebooks))
        for name, p in self.named_parameters():  # GPT-2 scaled init of residual projections
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))
        if self.item_shift is not None:  # starts as the plain user state; learns what the prefix adds
            nn.init.zeros_(self.item_shift.weight)
        if cfg.item_query == "attend":
            nn.init.zeros_(self.item_attn_o.weight)
        if self.item_mlp is not None:
            nn.init.zeros_(self.item_mlp[2].weight)

    def set_quantizer(self, centroids: torch.Tensor) -> None:
        """Product-quantizer centroids (item_codebooks, item_codebook_size, d / item_codebooks), fit on the
        training catalog's content before training (catalog/product_quantizer.py)."""
        self.item_centroids.copy_(centroids)

    def set_items(self, content: torch.Tensor, valid: torch.Tensor) -> None:
        """Content vectors (n_item_tokens, item_content_dim) of the item tokens and which tokens name an
        item (bool); the others can never be a target or an output."""
        self.item_content = content.to(self.item_content)
        self.item_bias = torch.where(valid.to(torch.bool), 0.0, NO_ITEM_LOGIT).to(self.item_bias)
        if self.cfg.item_codebooks:
            self.item_codes = self.content_codes(self.item_content)
        self._table_cache = None

    def content_codes(self, content: torch.Tensor) -> torch.Tensor:
        from genrec_model.catalog.product_quantizer import pq_encode

        if not bool(self.item_centroids.abs().sum() > 0):
            raise ValueError("content model: set_quantizer() before set_items() (no product quantizer yet)")
        return pq_encode(content, self.item_centroids)

    def item_embeddings(self, content: torch.Tensor, codes: torch.Tensor | None = None) -> torch.Tensor:
        """(N, D) item-token embeddings from content (N, item_content_dim) (and its codes, when known)."""
        out = self.item_encoder(content) if self.cfg.item_text_mlp else 0.0
        if self.cfg.item_codebooks:
            codes = self.content_codes(content) if codes is None else codes
            out = out + F.embedding_bag(codes + self.code_offsets, self.item_code_emb.weight, mode="sum")
        return out

    def train(self, mode: bool = True):
        self._table_cache = None
        return super().train(mode)

    def load_state_dict(self, *args, **kwargs):
        self._table_cache = None
        return super().load_state_dict(*args, **kwargs)

    def weights_changed(self) -> None:
        """Call after an optimizer step outside `train()` mode (e.g. alignment): drops the cached item rows."""
        self._table_cache = None

    def token_table(self) -> torch.Tensor:
        """(V, D) embedding of every token (input side; also the output side when weights are tied)."""
        if not self.cfg.item_content_dim:
            return self.wte.weight
        if self._table_cache is not None and not torch.is_grad_enabled():
            return self._table_cache
        lo = self.cfg.item_tokens[0]
        w = self.wte.weight
        items = self.item_embeddings(self.item_content, self.item_codes if self.cfg.item_codebooks else None)
        table = torch.cat([w[:lo], items, w[lo:]], 0)
        if not torch.is_grad_enabled() and not self.training:
            self._table_cache = table
        return table

    def output_table(self) -> torch.Tensor:
        return self.token_table() if self.lm_head is None else self.lm_head.weight

    def output_bias(self) -> torch.Tensor | None:
        """(V,) additive logit bias (NO_ITEM_LOGIT for item tokens that name no item), or None."""
        if self.cfg.logit_bias:
            return self.logit_bias
        if not self.cfg.item_content_dim:
            return None
        lo, hi = self.cfg.item_tokens
        bias = torch.zeros(self.cfg.vocab_size, dtype=self.item_bias.dtype, device=self.item_bias.device)
        return torch.cat([bias[:lo], self.item_bias, bias[hi:]])

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        out = h @ self.output_table().T
        bias = self.output_bias()
        return out if bias is None else out + bias

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)

    def hidden(
        self,
        input_ids: torch.Tensor,  # (B, T)
        attention_mask: torch.Tensor | None = None,  # (B, P+T), 1 = real token
        position_ids: torch.Tensor | None = None,  # (B, T)
        past_k: torch.Tensor | None = None,  # (n_layer, B, H, P, hd)
        past_v: torch.Tensor | None = None,
        table: torch.Tensor | None = None,  # token_table(), when the caller already computed it
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Final hidden states (B, T, D) and present_k/present_v (n_layer, B, H, P+T, hd)."""
        B, T = input_ids.shape
        P = 0 if past_k is None else past_k.shape[3]
        if position_ids is None:
            position_ids = torch.arange(P, P + T, device=input_ids.device).unsqueeze(0).expand(B, T)
        table = self.token_table() if table is None else table
        x = self.drop(F.embedding(input_ids, table) + self.wpe(position_ids))  # (B, T, D)
        bias = None
        if attention_mask is not None or past_k is not None:
            if attention_mask is None:
                attention_mask = torch.ones(B, P + T, dtype=torch.long, device=input_ids.device)
            q_pos = torch.arange(T, device=input_ids.device).unsqueeze(1) + P  # (T, 1)
            k_pos = torch.arange(P + T, device=input_ids.device).unsqueeze(0)  # (1, P+T)
            allowed = (k_pos <= q_pos).unsqueeze(0) & attention_mask.bool().unsqueeze(1)  # (B, T, P+T)
            neg = torch.finfo(x.dtype).min
            bias = torch.where(allowed, 0.0, neg).to(x.dtype).unsqueeze(1)  # (B, 1, T, P+T)
        ks, vs = [], []
        for i, block in enumerate(self.h):
            x, k, v = block(x, bias, None if past_k is None else past_k[i], None if past_v is None else past_v[i])
            ks.append(k)
            vs.append(v)
        return self.ln_f(x), torch.stack(ks), torch.stack(vs)

    def item_states(self, h: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                    table: torch.Tensor | None = None, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states h (B, T, D), h[:, t] predicting y[:, t] after inputs x (B, T) (x[:, t] = y[:, t-1]),
        with the item level's states replaced as `cfg.item_query` scores it: an item target at t is scored
        from h[:, t-1] (the state that predicted its prefix) + item_shift(e), e = the embedding of x[:, t]
        (its prefix token), + for "attend" an attention read of h[:, :t] with a query from e. Unchanged
        for "step" models. key_mask (B, T) bool: positions the read may see (left padding excluded)."""
        if self.item_shift is None:
            return h
        lo, hi = self.cfg.item_tokens
        table = self.token_table() if table is None else table
        e = F.embedding(x, table)
        prev = torch.cat([torch.zeros_like(h[:, :1]), h[:, :-1]], dim=1)
        keys = None
        if self.cfg.item_query == "attend":
            T = h.shape[1]
            earlier = torch.ones(T, T, dtype=torch.bool, device=h.device).tril(-1)  # keys strictly before
            allowed = earlier.unsqueeze(0)
            if key_mask is not None:
                allowed = allowed & key_mask.bool().unsqueeze(1)
            allowed = allowed | ~allowed.any(-1, keepdim=True)  # no key (never an item target): softmax defined
            keys = (*self.item_keys(h), allowed)
        out = self.item_query_state(prev, e, keys).to(h.dtype)
        return torch.where(((y >= lo) & (y < hi)).unsqueeze(-1), out, h)

    def item_query_state(self, prev: torch.Tensor, e: torch.Tensor, keys: tuple | None = None) -> torch.Tensor:
        """The item level's state (B, Q, D) from the state that predicted the prefix prev (B, Q, D) and the prefix
        token's embedding e (B, Q, D): prev + item_shift(e), + ("attend") item_read(e, *keys) with keys =
        (k, v, allowed) of `item_keys`, then z + item_mlp(item_ln(z)) when `item_query_mlp`. The one
        definition training, alignment, the torch decoder and the HF baseline use (numpy twin:
        decode/item_query.py)."""
        out = prev + self.item_shift(e)
        if self.cfg.item_query == "attend":
            out = out + self.item_read(e, *keys, prev=prev)
        if self.item_mlp is not None:
            out = out + self.item_mlp(self.item_ln(out))
        return out

    def item_keys(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """("attend") keys and values (B, S, D) of final hidden states (B, S, D) for `item_read`."""
        k, v = self.item_attn_kv(states).split(self.cfg.d_model, dim=-1)
        return k, v

    def item_read(self, e: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor,
                  prev: torch.Tensor | None = None) -> torch.Tensor:
        """("attend") item_attn_o(multi-head attention of queries item_attn_q(e) (B, Q, D) over keys/values
        (B, S, D)), allowed (B or 1, Q, S) bool -> (B, Q, D). `decode/item_query.py` is its numpy twin."""
        B, Q, D = e.shape
        H = self.cfg.n_head
        q = self.item_attn_q(e)
        if self.cfg.item_read_user:  # prev: the state that predicted the prefix (B, Q, D)
            q = q + self.item_attn_uq(prev)
        q = q.view(B, Q, H, D // H).transpose(1, 2)  # (B, H, Q, hd)
        kk = k.reshape(B, -1, H, D // H).transpose(1, 2)  # (B, H, S, hd)
        vv = v.reshape(B, -1, H, D // H).transpose(1, 2)
        att = (q @ kk.transpose(-2, -1)) / math.sqrt(D // H)
        att = att.masked_fill(~allowed.unsqueeze(1), torch.finfo(att.dtype).min)
        y = (torch.softmax(att, dim=-1) @ vv).transpose(1, 2).reshape(B, Q, D)
        return self.item_attn_o(y)

    def item_query_tables(self) -> dict[str, torch.Tensor] | None:
        """What a decoder needs to score the item level without a step (`cfg.item_query` "user"/"attend"),
        None for "step": query_shift (V, D) = item_shift of every token's embedding; for "attend" also
        query_q (V, D) = item_attn_q of every token's embedding and query_o (D, D) = item_attn_o's weight;
        with item_query_mlp the LayerNorm and MLP weights (query_ln_*, query_fc_*, query_proj_*)."""
        if self.item_shift is None:
            return None
        table = self.token_table()
        out = {"query_shift": self.item_shift(table)}
        if self.cfg.item_query == "attend":
            out["query_q"] = self.item_attn_q(table)
            out["query_o"] = self.item_attn_o.weight
            if self.cfg.item_read_user:
                out["query_uq"] = self.item_attn_uq.weight
        if self.item_mlp is not None:
            out.update(query_ln_w=self.item_ln.weight, query_ln_b=self.item_ln.bias,
                       query_fc_w=self.item_mlp[0].weight, query_fc_b=self.item_mlp[0].bias,
                       query_proj_w=self.item_mlp[2].weight, query_proj_b=self.item_mlp[2].bias)
        return out

    def forward(self, input_ids, attention_mask=None, position_ids=None, past_k=None, past_v=None):
        """Logits (B, T, V) and present_k/present_v (n_layer, B, H, P+T, hd)."""
        h, k, v = self.hidden(input_ids, attention_mask, position_ids, past_k, past_v)
        return self.logits(h), k, v

    def shared_prefix_step(self, input_ids, position_ids, prefix_mask, prefix_k, prefix_v, suffix_k, suffix_v):
        """Decode step with the history KV stored once per user (the `step_shared.onnx` graph,
        docs/CONTRACTS.md): input_ids/position_ids (N, 1), prefix_mask (B, T), prefix_k/v
        (n_layer, B, H, T, hd), suffix_k/v (n_layer, N, H, S, hd) -> final hidden state (N, D) and
        suffix_k/v (n_layer, N, H, S+1, hd). A step reads B*T + N*S cache entries instead of N*(T+S)
        (N = B*W beams, S <= levels - 1 << T). No LM head: the decoder scores only each beam's trie children
        from the hidden state and the exported head (`head_weights`, decode/fused_head.py)."""
        x = F.embedding(input_ids, self.token_table()) + self.wpe(position_ids)  # (N, 1, D)
        bias_p = torch.where(prefix_mask.bool(), 0.0, torch.finfo(x.dtype).min).to(x.dtype)[:, None, None, :]
        ks, vs = [], []
        for i, block in enumerate(self.h):
            x, k, v = block.shared_prefix(x, bias_p, prefix_k[i], prefix_v[i], suffix_k[i], suffix_v[i])
            ks.append(k)
            vs.append(v)
        return self.ln_f(x)[:, -1], torch.stack(ks), torch.stack(vs)

    def head_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(V, D) output table and (V,) logit bias (zeros when none): logits = hidden @ W.T + b."""
        bias = self.output_bias()
        w = self.output_table()
        return w, (torch.zeros(w.shape[0], dtype=w.dtype, device=w.device) if bias is None else bias)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
