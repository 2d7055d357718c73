"""Children-only output head, fused with the beam search step (Numba).

A beam at trie node n can only continue with n's children, and with `normalize="children"` its scores
are the model's log-softmax over those children only (for an `item_softmax="prefix"` model exactly its
trained P(item | prefix); for a level-trained model the same distribution renormalized over the catalog's
children). So the decoder never needs the other logits: from each row's final hidden state it computes
`hidden . W[token] + b[token]` for the children alone, their log-sum-exp and the running top-`width`, in
one pass. Per item step that is ~children x D multiply-adds per beam (~47 x 128 on Beauty) instead of the
whole item level (12,101 x 128), and no (rows, vocabulary) buffer crosses from onnxruntime to numpy.
"""
from __future__ import annotations

import weakref

import numba
import numpy as np

from genrec_model.decode.top_width import insert_candidate


# Reassociation lets LLVM vectorize the dot products; no "nnan"/"ninf": dead beams are -inf.
_FAST = {"reassoc", "contract", "nsz", "arcp"}


@numba.njit(cache=True, fastmath=_FAST)
def topk_children_fused(hidden, weight, bias, scores, nodes, n_rows, width, indptr, child_code, max_children, allowed):
    """Best `width` children per user over its `n_rows` beam rows, logits computed for children only.

    hidden (B*R, D) float32; weight (n_children, D), bias (n_children,) float32: the output-head row of
    every child of the level in the trie's child order (`child_head`), so a node's children are one
    contiguous block; scores (B*R,) float64; nodes (B*R,) int64 (-1 = dead); allowed (n_children,) bool:
    children that may be chosen (every child still counts in the normalization). Returns parent (B, W) local beam index, code,
    child node and score; -1 / -1 / -1 / -inf where dead. Same tie rule as `beam_search.topk_children`:
    candidates are visited in ascending flat index, so a later equal score never overtakes.
    """
    n_users = nodes.shape[0] // n_rows
    parent = np.full((n_users, width), -1, dtype=np.int64)
    code = np.full((n_users, width), -1, dtype=np.int64)
    child = np.full((n_users, width), -1, dtype=np.int64)
    best = np.full((n_users, width), -np.inf)
    buf = np.empty(max(max_children, 1), dtype=np.float64)
    dim = hidden.shape[1]
    for b in range(n_users):
        count = 0
        worst = -np.inf  # score a candidate must beat once the beam is full
        for r in range(n_rows):
            row = b * n_rows + r
            node = nodes[row]
            base = scores[row]
            if node < 0 or not (base > -np.inf):
                continue
            start, stop = indptr[node], indptr[node + 1]
            m = -np.inf
            for j in range(start, stop):
                acc32 = np.float32(0.0)
                for k in range(dim):
                    acc32 += hidden[row, k] * weight[j, k]
                x = np.float64(acc32 + bias[j])
                buf[j - start] = x
                if x > m:
                    m = x
            acc = 0.0
            for j in range(start, stop):
                acc += np.exp(buf[j - start] - m)
            norm = m + np.log(acc)
            for j in range(start, stop):
                if not allowed[j]:
                    continue
                s = base + (buf[j - start] - norm)
                if not (s > worst):
                    continue
                count = insert_candidate(best, parent, code, child, b, width, count, s, r, child_code[j], j)
                if count == width:
                    worst = best[b, width - 1]
    return parent, code, child, best


_CHILD_HEADS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def child_head(trie, weight: np.ndarray, bias: np.ndarray, level_starts) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per level, the head rows (n_children, D) and biases of the trie's children in child order (built once
    per trie and head, kept while the trie lives): the kernel then reads each node's children sequentially
    instead of gathering scattered rows of the (V, D) table."""
    per_trie = _CHILD_HEADS.setdefault(trie, {})
    key = (id(weight), id(bias), tuple(level_starts))
    if key not in per_trie:
        per_trie.clear()
        out = []
        for d in range(trie.n_levels):
            tokens = level_starts[d] + trie.child_code[d].astype(np.int64)
            out.append((np.ascontiguousarray(weight[tokens]), np.ascontiguousarray(bias[tokens])))
        per_trie[key] = (weight, bias, out)  # holding weight/bias keeps their ids valid
    return per_trie[key][2]
