"""Beyond-accuracy measures of recommendation lists.

All functions take ranked lists (U, K) of item indices padded with -1 where a list is
short; -1 slots are ignored everywhere.
"""
from __future__ import annotations

import numpy as np


def catalog_coverage(ranked: np.ndarray, n_items: int) -> float:
    """Share of the catalog that appears in at least one user's list."""
    ranked = np.asarray(ranked)
    if n_items <= 0:
        raise ValueError("n_items must be positive")
    return float(len(np.unique(ranked[ranked >= 0])) / n_items)


def _list_categories(ranked: np.ndarray, categories: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ranked = np.asarray(ranked)
    if ranked.ndim != 2:
        raise ValueError(f"ranked must be (U, K); got {ranked.shape}")
    valid = ranked >= 0  # (U, K)
    cats = np.where(valid, np.asarray(categories)[np.where(valid, ranked, 0)], -1)  # (U, K)
    return cats, valid


def intra_list_diversity(ranked: np.ndarray, categories: np.ndarray) -> float:
    """Mean over users of 1 - (share of item pairs in the list that share a category).

    categories: (N,) one category index per item. Lists with fewer than two valid items
    have no pairs and are left out of the mean; nan when no list has a pair.
    """
    cats, valid = _list_categories(ranked, categories)
    same = (cats[:, :, None] == cats[:, None, :]) & valid[:, :, None] & valid[:, None, :]  # (U, K, K)
    n = valid.sum(axis=1)
    pairs = n * (n - 1) / 2
    same_pairs = (same.sum(axis=(1, 2)) - n) / 2  # drop the diagonal, count each pair once
    has_pairs = pairs > 0
    if not has_pairs.any():
        return float("nan")
    return float(np.mean(1.0 - same_pairs[has_pairs] / pairs[has_pairs]))


def pick_category_level(distinct_per_level: list[int], level: int | None = None) -> int:
    """The category level to use: `level` when given, else the first level with more than one
    distinct value (0 when none has): category paths like Amazon's all share their first entry."""
    if level is not None:
        if level < 0:
            raise ValueError(f"category level must be >= 0, got {level}")
        return level
    return next((d for d, n in enumerate(distinct_per_level) if n > 1), 0)


def category_codes(category_paths: list, level: int) -> np.ndarray:
    """(N,) int category per item at `level` of its path; items without one get their own code
    (negative), so they never count as sharing a category."""
    names = [p[level] if p is not None and len(p) > level and p[level] is not None else None for p in category_paths]
    index: dict[str, int] = {}
    out = np.empty(len(names), dtype=np.int64)
    for i, name in enumerate(names):
        out[i] = index.setdefault(name, len(index)) if name is not None else -1 - i
    return out
