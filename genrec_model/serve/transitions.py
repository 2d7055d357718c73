"""Item-to-item transitions: how often item b follows item a in users' histories, and what that says about a
user's next item. The collaborative signal an item-ID recommender learns, as counts instead of parameters.

Counting: within each history (oldest first), every item b at 1..`window` positions after an item a adds
`decay ** (distance - 1)` to T[a, b]. Each row keeps its `top_n` heaviest successors (ties: lower item index),
and `row_total` keeps the row's full weight before that cut, so shares stay true probabilities.

Scoring a candidate c for a history h (newest last): over the `n_recent` newest items h_j (j = 0 newest),
weights w_j = recent_decay ** j,
- `transition`:       log(1 + sum_j w_j T[h_j, c])       (how strongly c follows this history)
- `transition_share`: sum_j w_j T[h_j, c] / row_total[h_j] / sum_j w_j   (P(next = c | h_j), mixed)
The ranker (serve/ranker.py) takes both as features of the generator's candidates; the `transition` baseline
ranks the whole catalog by the first. An item with no events (a new item) has no row and no column: it gets 0,
which is why the generator, not this table, is what reaches new items.

Two builders give the same table: `count_transitions` over item-index sequences (tests, baselines) and
`from_pairs` over pair weights summed elsewhere (the recommend and ranker jobs sum them in Spark,
udfs/transition_fns.py). Numpy + Numba only: decode workers load no torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numba
import numpy as np

from genrec_model.serve.config import TransitionConfig

FEATURES = ("transition", "transition_share")


@dataclass(frozen=True)
class TransitionTable:
    """Successors per item as CSR over item indices: row a is succ[indptr[a]:indptr[a+1]] (ascending item
    index) with their weights; row_total[a] is the weight of every successor of a before the top_n cut."""
    indptr: np.ndarray      # (N + 1,) int64
    succ: np.ndarray        # (nnz,) int64
    weight: np.ndarray      # (nnz,) float64
    row_total: np.ndarray   # (N,) float64

    @property
    def n_items(self) -> int:
        return len(self.indptr) - 1

    @property
    def nnz(self) -> int:
        return len(self.succ)


def sequence_pairs(sequences: Sequence[np.ndarray], cfg: TransitionConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(src, dst, weight) of every counted pair occurrence (not yet summed) in item-index sequences."""
    src, dst, w = [], [], []
    for seq in sequences:
        s = np.asarray(seq, dtype=np.int64)
        for k in range(1, cfg.window + 1):
            if len(s) > k:
                src.append(s[:-k])
                dst.append(s[k:])
                w.append(np.full(len(s) - k, cfg.decay ** (k - 1)))
    if not src:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64)
    return np.concatenate(src), np.concatenate(dst), np.concatenate(w)


def count_transitions(sequences: Sequence[np.ndarray], n_items: int, cfg: TransitionConfig) -> TransitionTable:
    """The table of item-index sequences (oldest first; entries must be in [0, n_items))."""
    src, dst, w = sequence_pairs(sequences, cfg)
    if len(src) and (min(src.min(), dst.min()) < 0 or max(src.max(), dst.max()) >= n_items):
        raise ValueError(f"sequence entries must be item indices in [0, {n_items})")
    key = src * n_items + dst
    uniq, inv = np.unique(key, return_inverse=True)
    summed = np.bincount(inv.reshape(-1), weights=w, minlength=len(uniq))
    return from_pairs(uniq // n_items, uniq % n_items, summed, n_items, cfg.top_n)


def from_pairs(src: np.ndarray, dst: np.ndarray, weight: np.ndarray, n_items: int, top_n: int,
               row_total: np.ndarray | None = None) -> TransitionTable:
    """The table of summed pair weights (each (src, dst) once). row_total: each src's full weight when the
    pairs are already cut to top_n elsewhere; None = the sum of the given pairs."""
    src, dst = np.asarray(src, dtype=np.int64), np.asarray(dst, dtype=np.int64)
    weight = np.asarray(weight, dtype=np.float64)
    if len(np.unique(src * n_items + dst)) != len(src):
        raise ValueError("from_pairs needs each (src, dst) pair once (sum their weights first)")
    total = np.bincount(src, weights=weight, minlength=n_items) if row_total is None else np.asarray(row_total, np.float64)
    order = np.lexsort((dst, -weight, src))  # per src: heaviest first, ties by lower item index
    src, dst, weight = src[order], dst[order], weight[order]
    starts = np.searchsorted(src, np.arange(n_items))
    rank = np.arange(len(src)) - starts[src]
    keep = rank < top_n
    src, dst, weight = src[keep], dst[keep], weight[keep]
    order = np.lexsort((dst, src))  # rows by ascending successor: binary search at scoring time
    src, dst, weight = src[order], dst[order], weight[order]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(src, minlength=n_items))]).astype(np.int64)
    return TransitionTable(indptr, dst, weight, total)


@numba.njit(cache=True)
def _score_candidates(indptr, succ, weight, row_total, recent, n_recent, cands, recent_decay, out):
    for u in range(cands.shape[0]):
        raw = np.zeros(cands.shape[1])
        share = np.zeros(cands.shape[1])
        wsum = 0.0
        for j in range(n_recent[u]):
            a = recent[u, j]
            wj = recent_decay ** j
            wsum += wj
            lo, hi = indptr[a], indptr[a + 1]
            if hi == lo or row_total[a] <= 0:
                continue
            for c in range(cands.shape[1]):
                item = cands[u, c]
                if item < 0:
                    continue
                pos = lo + np.searchsorted(succ[lo:hi], item)
                if pos < hi and succ[pos] == item:
                    raw[c] += wj * weight[pos]
                    share[c] += wj * weight[pos] / row_total[a]
        for c in range(cands.shape[1]):
            out[u, c, 0] = np.log1p(raw[c])
            out[u, c, 1] = share[c] / wsum if wsum > 0 else 0.0


def _recent(histories: Sequence[np.ndarray], n_items: int, n_recent: int) -> tuple[np.ndarray, np.ndarray]:
    """(U, n_recent) newest-first item indices of each history (entries outside the table dropped), counts."""
    recent = np.zeros((len(histories), n_recent), dtype=np.int64)
    counts = np.zeros(len(histories), dtype=np.int64)
    for u, h in enumerate(histories):
        h = np.asarray(h, dtype=np.int64)
        h = h[(h >= 0) & (h < n_items)][::-1][:n_recent]
        recent[u, :len(h)] = h
        counts[u] = len(h)
    return recent, counts


def transition_features(table: TransitionTable, histories: Sequence[np.ndarray], cands: np.ndarray,
                        cfg: TransitionConfig) -> np.ndarray:
    """(U, C, len(FEATURES)) float64 features of candidate item indices (U, C) (-1 = none: zeros) for
    item-index histories (oldest first)."""
    cands = np.asarray(cands, dtype=np.int64)
    if len(histories) != cands.shape[0]:
        raise ValueError(f"{len(histories)} histories for {cands.shape[0]} candidate rows")
    recent, counts = _recent(histories, table.n_items, cfg.n_recent)
    out = np.zeros(cands.shape + (len(FEATURES),), dtype=np.float64)
    _score_candidates(table.indptr, table.succ, table.weight, table.row_total, recent, counts,
                      np.where(cands < table.n_items, cands, -1), cfg.recent_decay, out)
    return out


def transition_rank(table: TransitionTable, histories: Sequence[np.ndarray], k: int, cfg: TransitionConfig,
                    fill_order: np.ndarray, exclude: Sequence[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The `transition` baseline: per user the k items with the largest sum_j w_j T[h_j, c] (ties: lower item
    index), completed by `fill_order` (e.g. serve.popularity.popularity_order) where fewer than k items follow
    the history. exclude: per-user items never returned (seen-item filtering). Returns ((U, k) item indices,
    -1 where short; (U,) bool: the list needed the fill)."""
    recent, counts = _recent(histories, table.n_items, cfg.n_recent)
    out = np.full((len(histories), k), -1, dtype=np.int64)
    filled = np.zeros(len(histories), dtype=bool)
    for u in range(len(histories)):
        scores: dict[int, float] = {}
        for j in range(counts[u]):
            a = recent[u, j]
            lo, hi = table.indptr[a], table.indptr[a + 1]
            for b, w in zip(table.succ[lo:hi].tolist(), table.weight[lo:hi].tolist()):
                scores[b] = scores.get(b, 0.0) + cfg.recent_decay ** j * w
        seen = set(np.asarray(exclude[u], dtype=np.int64).tolist()) if exclude is not None else set()
        ranked = [b for b, _ in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0])) if b not in seen][:k]
        if len(ranked) < k:
            filled[u] = True
            taken = set(ranked) | seen
            for b in fill_order[: k + len(taken)].tolist():
                if len(ranked) == k:
                    break
                if b not in taken:
                    ranked.append(b)
        out[u, :len(ranked)] = ranked
    return out, filled
