"""Most-popular baseline: rank items by interaction count in the training data.

Ties go to the lower item index, so the ranking is deterministic.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def popularity_counts(train_sequences: Sequence[np.ndarray], n_items: int) -> np.ndarray:
    """Interaction count per item over the training sequences: (N,) int64."""
    flat = [np.asarray(s, dtype=np.int64) for s in train_sequences]
    items = np.concatenate(flat) if flat else np.zeros(0, dtype=np.int64)
    return np.bincount(items, minlength=n_items).astype(np.int64)


def popularity_order(counts: np.ndarray) -> np.ndarray:
    """All item indices by decreasing count, ties by increasing index: (N,)."""
    counts = np.asarray(counts)
    return np.lexsort((np.arange(len(counts)), -counts))


def popularity_rank(
    counts: np.ndarray, n_users: int, k: int, exclude: Sequence[np.ndarray] | None = None
) -> np.ndarray:
    """(n_users, k) top items, best first; -1 where fewer than k items remain.

    exclude: optional per-user arrays of items to skip (e.g. items already seen).
    """
    order = popularity_order(counts)
    top = np.full(k, -1, dtype=np.int64)
    top[: min(k, len(order))] = order[:k]
    if exclude is None:
        return np.tile(top, (n_users, 1))
    if len(exclude) != n_users:
        raise ValueError(f"exclude has {len(exclude)} rows for {n_users} users")
    out = np.full((n_users, k), -1, dtype=np.int64)
    for u, seen in enumerate(exclude):
        seen = np.asarray(seen, dtype=np.int64)
        head = order[: k + len(seen)]  # enough candidates to survive the exclusions
        keep = head[~np.isin(head, seen)][:k]
        out[u, : len(keep)] = keep
    return out
