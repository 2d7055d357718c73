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
    out: dict[str, float] = {}
    for k in ks:
        recall, ndcg = per_user_gains(ranked, target, k)
        n = max(len(recall), 1)
        out[f"recall@{k}"] = float(recall.sum() / n)
        out[f"ndcg@{k}"] = float(ndcg.sum() / n)
    return out

def per_user_gains(ranked: np.ndarray, target: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(U,) Recall@k (0/1) and NDCG@k of each user: the terms `recall_ndcg_at_k` averages."""
    ranks = hit_ranks(ranked, target)
    inside = (ranks > 0) & (ranks <= k)
    ndcg = np.zeros(len(ranks), dtype=np.float64)
    ndcg[inside] = 1.0 / np.log2(ranks[inside] + 1.0)
    return inside.astype(np.float64), ndcg


def paired_bootstrap(a: np.ndarray, b: np.ndarray, n_boot: int = 2000, seed: int = 0,
                     level: float = 0.95) -> tuple[float, float, float]:
    """Mean of b - a over paired per-user values and its bootstrap percentile interval (users resampled)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or not len(a):
        raise ValueError(f"paired values must be two equal non-empty vectors, got {a.shape} and {b.shape}")
    diff = b - a
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    for i in range(n_boot):
        means[i] = diff[rng.integers(0, len(diff), len(diff))].mean()
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(diff.mean()), float(lo), float(hi)
