"""The item level of a model trained with `item_query` "user" or "attend", scored without a decoder step.

Such a model scores an item from the user state that predicted its prefix, shifted by the prefix token
(`query_shift`), and ("attend") one attention read of the history's final states with a query made from the
prefix token (`SeqModel.item_read`, whose numpy twin this is). Per beam that is ~T x D multiply-adds for the
read plus D x D for its output, instead of a transformer step through every layer.
"""
from __future__ import annotations

import numpy as np


def item_level_hidden(user_hidden: np.ndarray, rows: np.ndarray, tokens: np.ndarray, tables: dict,
                      keys: tuple | None, n_head: int, layer_norm_eps: float) -> np.ndarray:
    """(N, D) float32 states scoring the item level for N beam rows grouped by user (B users x W beams,
    `rows` (N,) = each row's user, in user order): user_hidden (B, D) from the prefill, tokens (N,) each beam's
    prefix token, tables (`head.npz` / `SeqModel.item_query_tables`): query_shift (V, D) and, for "attend",
    query_q (V, D), query_o (D, D), with item_query_mlp the query_ln_* / query_fc_* / query_proj_* weights; keys
    ("attend"): (k (B, T, D), v (B, T, D), mask (B, T), 1 = history)."""
    rows = np.asarray(rows, dtype=np.int64)
    out = user_hidden[rows] + tables["query_shift"][tokens]
    if "query_q" in tables:
        out = out + _read(user_hidden, rows, tokens, tables, keys, n_head)
    if "query_fc_w" in tables:  # z + MLP(LayerNorm(z)), GELU (tanh) as the model's
        mu = out.mean(axis=1, keepdims=True)
        var = ((out - mu) ** 2).mean(axis=1, keepdims=True)
        z = (out - mu) / np.sqrt(var + np.float32(layer_norm_eps)) * tables["query_ln_w"] + tables["query_ln_b"]
        a = z @ tables["query_fc_w"].T + tables["query_fc_b"]
        a = 0.5 * a * (1.0 + np.tanh(np.float32(np.sqrt(2.0 / np.pi)) * (a + np.float32(0.044715) * (a * a * a))))  # a*a*a: ** is ~200x slower
        out = out + a @ tables["query_proj_w"].T + tables["query_proj_b"]
    return np.ascontiguousarray(out, dtype=np.float32)


def _read(user_hidden, rows, tokens, tables: dict, keys: tuple | None, n_head: int) -> np.ndarray:
    """("attend") query_o (attention of query_q[tokens] over each row's user's history keys): (N, D)."""
    if keys is None:
        raise ValueError("an item_query='attend' model needs the history's keys from the prefill (item_k, item_v)")
    k, v, mask = keys
    B, T, D = k.shape
    W = len(rows) // B
    if len(rows) != B * W or not (rows == np.repeat(np.arange(B), W)).all():
        raise ValueError("item_level_hidden: rows must be W beams per user, in user order")
    hd = D // n_head
    q = tables["query_q"][tokens]
    if "query_uq" in tables:  # item_read_user: + a map of the user's state, once per user
        q = (q.reshape(B, W, D) + (user_hidden @ tables["query_uq"].T)[:, None, :]).reshape(B * W, D)
    q = q.reshape(B, W, n_head, hd).transpose(0, 2, 1, 3)  # (B, H, W, hd)
    kk = k.reshape(B, T, n_head, hd).transpose(0, 2, 3, 1)  # (B, H, hd, T)
    vv = v.reshape(B, T, n_head, hd).transpose(0, 2, 1, 3)  # (B, H, T, hd)
    att = (q @ kk) * np.float32(1.0 / np.sqrt(hd))  # (B, H, W, T)
    att = np.where(np.asarray(mask, dtype=bool)[:, None, None, :], att, -np.inf)
    att = np.exp(att - att.max(axis=-1, keepdims=True))
    att /= att.sum(axis=-1, keepdims=True)
    y = (att @ vv).transpose(0, 2, 1, 3).reshape(B * W, D)  # (N, D)
    return y @ tables["query_o"].T
