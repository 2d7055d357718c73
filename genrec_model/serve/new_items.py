"""Items the generator never saw in training, as candidates of the learned ranker (serve/ranker.py).

The generator under-scores new items as a group (it never saw one as a target) and every collaborative feature of
a new item is empty (no transitions, no popularity), so a ranker fit on warm targets alone ranks them last: the
night they arrive they reach almost no list. Two pieces fix that without a retrain:

- Candidates: per user, the `m` new items whose text embedding is closest to the user's recent items (the
  content-knn profile, baselines/content_knn.py) join the generator's beams; a new item the beams hold leaves
  them (it is scored once, as new). The generator still speaks for them through the distribution over semantic
  prefixes it puts on the first SID level (`decode(first_level=True)`), which scores an item by its prefix.
- Training signal: the ranker is fit on validation users, whose targets are never withheld items, so it has never
  seen a new item win. `pseudo_new_mask` draws a share of warm items (seeded, as the cold-start protocol draws
  the withheld ones) that the fit treats exactly as serving treats new items: out of the beams, into the content
  candidates, popularity and transitions zeroed. The ranker then learns how much a new item's content and prefix
  are worth against a warm item's counts, and how often the next item is a new one (the share drawn: set it to
  the share of next items that go to items newer than the model).

Numpy only: decode workers load no torch.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from genrec_model.baselines.config import ContentKNNConfig
from genrec_model.baselines.content_knn import top_k_rows, user_profiles
from genrec_model.data.splits import cold_item_mask


def pseudo_new_mask(item_ids, eligible: np.ndarray, share: float, seed: int) -> np.ndarray:
    """(N,) bool: eligible items drawn as new for the ranker's fit (a draw per (seed, item_id), independent of the
    withheld items' draw, which uses `data.cold_seed`)."""
    return cold_item_mask(item_ids, share, f"ranker-pseudo-new-{seed}") & np.asarray(eligible, dtype=bool)


def content_candidates(unit: np.ndarray, histories: Sequence[np.ndarray], pool: np.ndarray, m: int,
                       cfg: ContentKNNConfig, batch: int = 1024) -> np.ndarray:
    """(U, m) item indices (-1 padded), best first: the pool items (N,) bool most similar to each user's recent
    items (unit (N, d) unit text embeddings; histories oldest first), seen items excluded."""
    idx = np.flatnonzero(pool)
    out = np.full((len(histories), m), -1, dtype=np.int64)
    if not len(idx) or m == 0:
        return out
    pool_unit = unit[idx].astype(np.float32)
    position = np.full(len(pool), -1, dtype=np.int64)
    position[idx] = np.arange(len(idx))
    for s in range(0, len(histories), batch):
        rows = histories[s:s + batch]
        scores = user_profiles(unit, rows, cfg).astype(np.float32) @ pool_unit.T
        for r, h in enumerate(rows):
            seen = position[np.asarray(h, dtype=np.int64)]
            scores[r, seen[seen >= 0]] = -np.inf
        top = top_k_rows(scores, m)
        out[s:s + len(rows)] = np.where(top >= 0, idx[np.maximum(top, 0)], -1)
    return out


def with_new_candidates(cands: np.ndarray, log_prob: np.ndarray, is_new: np.ndarray,
                        new_cands: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The beams (U, C) without the items of is_new (N,), followed by the content candidates (U, M): (items
    (U, C + M), log-probs (0 for the new ones: they are scored by the ranker's new-item features), new (U, C + M)
    bool)."""
    drop = (cands >= 0) & np.asarray(is_new, dtype=bool)[np.maximum(cands, 0)]
    items = np.concatenate([np.where(drop, -1, cands), new_cands], axis=1)
    lp = np.concatenate([np.where(drop, -np.inf, log_prob), np.where(new_cands >= 0, 0.0, -np.inf)], axis=1)
    new = np.concatenate([np.zeros(cands.shape, dtype=bool), new_cands >= 0], axis=1)
    return items, lp, new
