"""content-knn: a content baseline that needs no interaction data for its candidates.

A candidate item c is scored by the recency-weighted mean cosine similarity between its text
embedding and those of the user's most recent items:

    score(c) = sum_j w_j cos(e_c, e_{h_j}) / sum_j w_j,   j = 0 (newest) .. n_recent - 1,  w_j = decay ** j

Since cos(e_c, e_h) = ê_c · ê_h (unit vectors), the score is ê_c · p_u with the user profile
p_u = sum_j w_j ê_{h_j} / sum_j w_j: one (U, d) @ (d, N) product ranks the whole catalog. An item that
was never interacted with (a cold item) is scored like any other, so this baseline can recommend it.

Items without an embedding (zero vectors) score MISSING_SCORE, below any cosine: still candidates,
ranked last. Ties go to the lower item index, as in serve.popularity.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from genrec_model.baselines.config import ContentKNNConfig

MISSING_SCORE = -2.0  # below every cosine similarity


def normalize_rows(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, d) -> (unit rows as float32, (N,) bool: row had a non-zero embedding)."""
    x = np.asarray(embeddings, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1)
    present = norms > 0
    unit = np.zeros_like(x)
    unit[present] = x[present] / norms[present, None]
    return unit, present


def recency_weights(n: int, decay: float) -> np.ndarray:
    """(n,) weights of the last n history items, oldest first (the newest weighs 1)."""
    return decay ** np.arange(n - 1, -1, -1, dtype=np.float64)


def user_profiles(unit: np.ndarray, histories: Sequence[np.ndarray], cfg: ContentKNNConfig) -> np.ndarray:
    """(U, d) recency-weighted mean of the unit embeddings of each user's last n_recent items.

    History entries < 0 (unknown items) and items without an embedding are skipped before the last
    n_recent are taken; a user with none left gets a zero profile (every embedded candidate scores 0)."""
    present = np.linalg.norm(unit, axis=1) > 0
    out = np.zeros((len(histories), unit.shape[1]), dtype=np.float64)
    for u, h in enumerate(histories):
        h = np.asarray(h, dtype=np.int64)
        h = h[h >= 0]
        h = h[present[h]][-cfg.n_recent:]
        if len(h):
            w = recency_weights(len(h), cfg.decay)
            out[u] = (w[:, None] * unit[h]).sum(axis=0) / w.sum()
    return out


def content_knn_scores(unit: np.ndarray, histories: Sequence[np.ndarray], cfg: ContentKNNConfig) -> np.ndarray:
    """(U, N) scores of every catalog item for each user (unit: normalize_rows(embeddings)[0])."""
    present = np.linalg.norm(unit, axis=1) > 0
    scores = user_profiles(unit, histories, cfg) @ unit.T.astype(np.float64)
    scores[:, ~present] = MISSING_SCORE
    return scores


def top_k_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """(U, N) scores -> (U, k) indices of the k best per row, best first, ties by lower index; -inf
    scores (excluded items) are never returned (-1 instead)."""
    n_users, n = scores.shape
    out = np.full((n_users, k), -1, dtype=np.int64)
    k_eff = min(k, n)
    if k_eff == 0:
        return out
    for u in range(n_users):
        row = scores[u]
        kth = np.partition(row, n - k_eff)[n - k_eff]  # the k-th largest value
        cand = np.flatnonzero(row >= kth)  # every item tied with it too, so ties resolve by index
        cand = cand[np.lexsort((cand, -row[cand]))][:k_eff]
        cand = cand[np.isfinite(row[cand])]
        out[u, : len(cand)] = cand
    return out


def content_knn_rank(
    embeddings: np.ndarray,
    histories: Sequence[np.ndarray],
    k: int,
    cfg: ContentKNNConfig = ContentKNNConfig(),
    exclude: Sequence[np.ndarray] | None = None,
    batch_size: int = 1024,
) -> np.ndarray:
    """Top-k items per user over the full catalog, best first: (U, k) int64, -1 where short.

    embeddings: (N, d) text embedding per catalog item index (zero rows: no embedding).
    exclude: optional per-user item arrays set to -inf (seen-item filtering, as the other models)."""
    unit, _ = normalize_rows(embeddings)
    if exclude is not None and len(exclude) != len(histories):
        raise ValueError(f"exclude has {len(exclude)} rows for {len(histories)} users")
    out = np.full((len(histories), k), -1, dtype=np.int64)
    for b in range(0, len(histories), batch_size):
        users = range(b, min(b + batch_size, len(histories)))
        scores = content_knn_scores(unit, [histories[u] for u in users], cfg)
        if exclude is not None:
            for r, u in enumerate(users):
                seen = np.asarray(exclude[u], dtype=np.int64)
                scores[r, seen[seen >= 0]] = -np.inf
        out[b: b + len(users)] = top_k_rows(scores, k)
    return out
