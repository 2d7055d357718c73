"""Decoded beams -> final per-user recommendations (pure numpy / pandas).

Steps (`recommend`): drop items the user already interacted with (optional), fuse model scores with
a prior and re-rank (optional), truncate to top K, fill short lists and serve users with no usable
history from popularity (flagged). Helpers measure intra-list diversity and category coverage so the
fusion weight's accuracy/diversity trade-off can be read off an evaluation.

Fusion (SIGMA-style adaptive probabilistic fusion): score = (1 - w_u) * log p_model + w_u * log prior,
where prior is item popularity or a category-coverage prior `penalty ** (#items of the same category
already placed)` applied greedily. With `adaptive`, w_u = w * normalized entropy of the user's
renormalized candidate distribution: a confident model leans less on the prior.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from genrec_model.serve.config import ServingConfig


@dataclass(frozen=True)
class Recommendations:
    items: np.ndarray  # (U, K) item index, -1 where the list is short
    scores: np.ndarray  # (U, K) fused score of model items; log popularity prior of filled items
    from_model: np.ndarray  # (U, K) bool: slot came from the decoder (else popularity)
    fallback: np.ndarray  # (U,) bool: no usable history, whole list is popularity


def log_popularity_prior(counts: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """(N,) interaction counts -> (N,) log of add-alpha smoothed popularity probabilities."""
    counts = np.asarray(counts, dtype=np.float64)
    return np.log(counts + alpha) - np.log(counts.sum() + alpha * len(counts))


def needs_fallback(histories: Sequence[np.ndarray]) -> np.ndarray:
    """(U,) True where a history is empty or holds only unknown items (index < 0)."""
    return np.array([not (np.asarray(h) >= 0).any() for h in histories], dtype=bool)


def adaptive_weights(model_logp: np.ndarray, w: float) -> np.ndarray:
    """(U, C) candidate log-probs (-inf padded) -> (U,) w * normalized entropy of the renormalized candidates."""
    finite = np.isfinite(model_logp)
    m = np.where(finite, model_logp, -np.inf).max(axis=1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    p = np.where(finite, np.exp(model_logp - m), 0.0)
    p = p / np.maximum(p.sum(axis=1, keepdims=True), 1e-300)
    ent = -(p * np.log(np.where(p > 0, p, 1.0))).sum(axis=1)
    n = finite.sum(axis=1)
    return w * np.where(n > 1, ent / np.log(np.maximum(n, 2)), 0.0)


def fuse_popularity(model_logp: np.ndarray, items: np.ndarray, log_prior: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(U, C) fused scores (1 - w_u) * log p + w_u * log prior; -inf stays -inf (padding)."""
    w = np.broadcast_to(np.asarray(w, dtype=np.float64), (items.shape[0],))[:, None]
    prior = log_prior[np.maximum(items, 0)]
    with np.errstate(invalid="ignore"):
        fused = (1.0 - w) * model_logp + w * prior
    return np.where((items >= 0) & np.isfinite(model_logp), fused, -np.inf)


def rerank_category(model_logp: np.ndarray, cats: np.ndarray, w: float, penalty: float, k: int) -> np.ndarray:
    """Greedy order (<= k positions into the candidates) of one user's candidates under the category prior.

    At each position the candidate maximizing (1-w) log p + w * n_same * log(penalty) is placed, n_same
    being how many placed items share its category; ties go to the earlier candidate.
    """
    cand = np.flatnonzero(np.isfinite(model_logp))
    placed: list[int] = []
    counts: dict[int, int] = {}
    log_pen = np.log(penalty)
    while cand.size and len(placed) < k:
        n_same = np.array([counts.get(int(c), 0) for c in cats[cand]], dtype=np.float64)
        score = (1.0 - w) * model_logp[cand] + w * n_same * log_pen
        j = int(np.argmax(score))
        placed.append(int(cand[j]))
        counts[int(cats[cand[j]])] = counts.get(int(cats[cand[j]]), 0) + 1
        cand = np.delete(cand, j)
    return np.array(placed, dtype=np.int64)


def reserve_new_items(items: np.ndarray, scores: np.ndarray, new_items: np.ndarray, new_scores: np.ndarray,
                      histories: Sequence[np.ndarray], n_slots: int, filter_seen: bool) -> None:
    """In place on ranked lists items/scores (U, K): the last `n_slots` positions go to the user's best new
    items (new_items/new_scores (U, C), best first, -1 padded) that are not already higher in the list;
    when a user has fewer, the list's own items keep those positions."""
    k = items.shape[1]
    head = k - n_slots
    for u in range(items.shape[0]):
        top = items[u, :head]
        ok = (new_items[u] >= 0) & np.isfinite(new_scores[u]) & ~np.isin(new_items[u], top)
        if filter_seen:
            ok &= ~np.isin(new_items[u], np.asarray(histories[u]))
        picked = np.flatnonzero(ok)[:n_slots]
        if not len(picked):
            continue
        tail = [(i, s) for i, s in zip(items[u, head:], scores[u, head:]) if i >= 0 and i not in new_items[u, picked]]
        fill = [(int(new_items[u, j]), float(new_scores[u, j])) for j in picked] + tail
        fill = fill[:n_slots]
        items[u, head:], scores[u, head:] = -1, -np.inf
        items[u, head:head + len(fill)] = [i for i, _ in fill]
        scores[u, head:head + len(fill)] = [s for _, s in fill]


def boost_new_items(items: np.ndarray, logp: np.ndarray, new_items: np.ndarray, new_scores: np.ndarray,
                    is_new: np.ndarray, boost: float) -> tuple[np.ndarray, np.ndarray]:
    """Candidates (U, C + C2): the decoded ones plus the new-item search's (duplicates dropped), with `boost`
    added to the log-prob of every item the model never saw in training. The model never saw a new item
    as a target, so it under-scores new items as a group; one constant, picked on validation, re-calibrates
    them against the rest (benchmarks/new_item_boost.py)."""
    dup = (new_items[:, :, None] == items[:, None, :]).any(-1)
    items = np.concatenate([items, np.where(dup, -1, new_items)], axis=1)
    logp = np.concatenate([logp, np.where(dup, -np.inf, new_scores)], axis=1)
    boosted = (items >= 0) & np.asarray(is_new, dtype=bool)[np.maximum(items, 0)]
    return items, np.where(boosted, logp + boost, logp)


def recommend(
    decoded_items: np.ndarray,
    decoded_scores: np.ndarray,
    histories: Sequence[np.ndarray],
    popularity: np.ndarray,
    cfg: ServingConfig = ServingConfig(),
    categories: np.ndarray | None = None,
    new: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> Recommendations:
    """decoded (U, C) item indices / log-probs, best first (C >= top_k leaves room for filtering);
    histories: per user item indices (unknown items = -1); popularity (N,) counts; categories (N,) ints;
    new: (items, log-probs) (U, C2) of the search over items the model never saw in training and the (N,)
    mask of those items: candidates for `cfg.new_item_boost` and the slots `cfg.new_item_share` reserves."""
    items = np.asarray(decoded_items, dtype=np.int64).copy()
    logp = np.asarray(decoded_scores, dtype=np.float64).copy()
    if new is not None and cfg.new_item_boost:
        items, logp = boost_new_items(items, logp, *new, cfg.new_item_boost)
    n_users, k = items.shape[0], cfg.top_k
    fallback = needs_fallback(histories)
    logp[items < 0] = -np.inf
    logp[fallback] = -np.inf
    if cfg.filter_seen:
        for u, h in enumerate(histories):
            logp[u, np.isin(items[u], np.asarray(h))] = -np.inf
    log_prior = log_popularity_prior(popularity, cfg.popularity_alpha)
    w = adaptive_weights(logp, cfg.fusion_weight) if cfg.adaptive else np.full(n_users, cfg.fusion_weight)
    out_items = np.full((n_users, k), -1, dtype=np.int64)
    out_scores = np.full((n_users, k), -np.inf)
    if cfg.prior == "category" and cfg.fusion_weight > 0:
        if categories is None:
            raise ValueError("prior='category' needs categories")
        for u in range(n_users):
            order = rerank_category(logp[u], categories[items[u]], float(w[u]), cfg.category_penalty, k)
            out_items[u, : len(order)] = items[u, order]
            out_scores[u, : len(order)] = logp[u, order]
    else:
        fused = fuse_popularity(logp, items, log_prior, w) if cfg.fusion_weight > 0 else logp
        order = np.argsort(-fused, axis=1, kind="stable")[:, :k]
        top = np.take_along_axis(fused, order, axis=1)
        valid = np.isfinite(top)
        out_items[:, : order.shape[1]] = np.where(valid, np.take_along_axis(items, order, axis=1), -1)
        out_scores[:, : order.shape[1]] = np.where(valid, top, -np.inf)
    n_new = int(round(cfg.new_item_share * k))
    if n_new and new is not None:
        reserve_new_items(out_items, out_scores, new[0], new[1], histories, n_new, cfg.filter_seen)
    from_model = out_items >= 0
    popular = np.argsort(-log_prior, kind="stable")
    short = (~from_model).any(axis=1) & (fallback | cfg.fill_with_popular)
    if short.any():
        for u in np.flatnonzero(short):
            seen = np.asarray(histories[u]) if cfg.filter_seen else np.zeros(0, dtype=np.int64)
            taken = np.concatenate([out_items[u][from_model[u]], seen])
            n_have = int(from_model[u].sum())
            extra = popular[~np.isin(popular, taken)][: k - n_have]
            out_items[u, n_have : n_have + len(extra)] = extra
            out_scores[u, n_have : n_have + len(extra)] = log_prior[extra]
    return Recommendations(out_items, out_scores, from_model, fallback)
