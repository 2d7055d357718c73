"""Ranking metrics for leave-one-out evaluation (one held-out item per user).

With a single relevant item, HR@K == Recall@K and NDCG@K == 1/log2(rank+1) when
the item is ranked within the top K (rank 1-based), else 0.
"""
from __future__ import annotations

import numpy as np


def hit_ranks(ranked: np.ndarray, target: np.ndarray) -> np.ndarray:
    """1-based rank of each user's target inside its ranked list, 0 when absent.

    ranked: (U, K) item indices, best first; padded with -1 where a list is short.
    target: (U,) item index per user.
    """
    ranked = np.asarray(ranked)
    target = np.asarray(target)
    if ranked.ndim != 2 or target.shape != (ranked.shape[0],):
        raise ValueError(f"ranked must be (U, K) and target (U,); got {ranked.shape} and {target.shape}")
    hits = ranked == target[:, None]  # (U, K)
    found = hits.any(axis=1)
    return np.where(found, hits.argmax(axis=1) + 1, 0)


def recall_ndcg_at_k(ranked: np.ndarray, target: np.ndarray, ks=(1, 5, 10, 20)) -> dict[str, float]:
    """Mean Recall@K and NDCG@K over users, e.g. {"recall@10": .., "ndcg@10": ..}."""
    ranks = hit_ranks(ranked, target)
    out: dict[str, float] = {}
    n = max(len(ranks), 1)
    for k in ks:
        inside = (ranks > 0) & (ranks <= k)
        out[f"recall@{k}"] = float(inside.sum() / n)
        gains = np.zeros(len(ranks), dtype=np.float64)
        gains[inside] = 1.0 / np.log2(ranks[inside] + 1.0)
        out[f"ndcg@{k}"] = float(gains.sum() / n)
    return out
