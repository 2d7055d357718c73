"""Learned re-ranking of the generator's candidates (a second stage over its beams, as LIGER and production
rankers do): score = w . standardized features of each (user, candidate), the weights fit by listwise softmax
cross-entropy on held-out next items that are among the candidates.

Features (`FEATURES`): the generator's log-probability, the semantic judge's user-conditional score, the
judge's standardized evidence per aspect (profile, context, closest, popularity; align/judge.py), and the
collaborative evidence of item-to-item transitions (how strongly the candidate follows the user's recent items,
serve/transitions.py), the generator's log-probability of the candidate's semantic prefix, and, for items the
generator never saw in training (content candidates, serve/new_items.py), an indicator and their own slopes on
the judge and the prefix. `log_prob + alpha * judge` (`serving.judge_weight`) is one point of this family; the
fit picks the whole direction. The fit (`genrec run ranker`, jobs/ranker.py) uses validation users only and never an
item withheld as new (the new-item weights are learned on warm items drawn as pseudo-new), so test lists and the
cold segment stay untouched. Numpy only: decode workers load no torch.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np

from genrec_model.align.judge import ASPECTS, ItemSide, SemanticJudge, aspect_evidence, pad_histories, user_features
from genrec_model.baselines.config import ContentKNNConfig
from genrec_model.serve.config import TransitionConfig
from genrec_model.serve.new_items import content_candidates, with_new_candidates
from genrec_model.serve.transitions import FEATURES as TRANSITION_FEATURES
from genrec_model.serve.transitions import TransitionTable, transition_features

JUDGE_FEATURES = ("log_prob", "judge", "profile", "context", "closest", "popularity")
# new items (serve/new_items.py): the generator's log-prob of the candidate's semantic prefix (every candidate),
# a new-item indicator and the new items' own slopes on the judge and the prefix (content is all they have)
NEW_ITEM_FEATURES = ("prefix_log_prob", "is_new", "new_judge", "new_prefix_log_prob")
FEATURES = JUDGE_FEATURES + TRANSITION_FEATURES + NEW_ITEM_FEATURES
_ASPECT_COLUMNS = [ASPECTS.index(a) for a in JUDGE_FEATURES[2:]]
_COL = {f: n for n, f in enumerate(FEATURES)}
RANKER_FILE = "ranker.json"


def candidate_features(judge: SemanticJudge, items: ItemSide, histories: list[np.ndarray], cands: np.ndarray,
                       log_prob: np.ndarray, transitions: tuple[TransitionTable, TransitionConfig],
                       first_level: np.ndarray, new: np.ndarray | None = None, chunk: int = 512) -> np.ndarray:
    """(U, C, len(FEATURES)) float64 features of candidate item indices (U, C) (-1 = none: zeros) with their
    generator log-probs (U, C), for item-index histories (oldest first, non-empty); transitions: the split's
    transition table over the same item index and its config; first_level (U, level-0 size): the generator's
    log-probs of the first SID level (`decode(first_level=True)`), read at each candidate's prefix
    (`items.prefix`); new (U, C) bool: candidates scored as new items (no log-prob, no transitions)."""
    cfg = judge.config
    n_judge = len(JUDGE_FEATURES)
    new = np.zeros(cands.shape, dtype=bool) if new is None else np.asarray(new, dtype=bool)
    out = np.zeros(cands.shape + (len(FEATURES),), dtype=np.float64)
    for s in range(0, len(histories), chunk):
        hist, mask = pad_histories(histories[s:s + chunk], cfg.max_history)
        c = np.maximum(cands[s:s + chunk], 0)
        evid = aspect_evidence(items, hist, mask, c, cfg.recency_decay)
        feats = user_features(items, hist, mask, cfg.recency_decay, cfg.max_history)
        out[s:s + chunk, :, 1] = judge.score_evidence(evid, feats)
        out[s:s + chunk, :, 2:n_judge] = ((evid - judge.mean) / judge.std)[:, :, _ASPECT_COLUMNS]
    t0 = _COL[TRANSITION_FEATURES[0]]
    out[:, :, t0:t0 + len(TRANSITION_FEATURES)] = transition_features(transitions[0], histories, cands, transitions[1])
    out[:, :, 0] = np.where(np.isfinite(log_prob), log_prob, 0.0)
    prefix = np.take_along_axis(first_level, items.prefix[np.maximum(cands, 0)], axis=1)
    out[:, :, _COL["prefix_log_prob"]] = np.where(np.isfinite(prefix), prefix, 0.0)  # -inf only on padding
    out[new, 0] = 0.0
    out[new, t0:t0 + len(TRANSITION_FEATURES)] = 0.0
    out[:, :, _COL["is_new"]] = new
    out[:, :, _COL["new_judge"]] = np.where(new, out[:, :, 1], 0.0)
    out[:, :, _COL["new_prefix_log_prob"]] = np.where(new, out[:, :, _COL["prefix_log_prob"]], 0.0)
    out[cands < 0] = 0.0
    return out


def ranker_candidates(judge: SemanticJudge, items: ItemSide, histories: list[np.ndarray], cands: np.ndarray,
                      log_prob: np.ndarray, first_level: np.ndarray, transitions: tuple[TransitionTable, TransitionConfig],
                      new_pool: np.ndarray | None = None, new_candidates: int = 0,
                      knn: ContentKNNConfig = ContentKNNConfig()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What the ranker scores, the same in its fit and in serving: the decoded candidates (U, C) and, when
    new_candidates > 0 and new_pool (N,) bool holds items, the new_candidates content candidates of the pool
    (pool items leave the beams; serve/new_items.py). Returns (candidates, log-probs, features (U, C', F))."""
    new = None
    if new_candidates and new_pool is not None and np.any(new_pool):
        extra = content_candidates(items.unit, histories, new_pool, new_candidates, knn)
        cands, log_prob, new = with_new_candidates(cands, log_prob, new_pool, extra)
    return cands, log_prob, candidate_features(judge, items, histories, cands, log_prob, transitions, first_level, new)


@dataclass
class Ranker:
    weights: np.ndarray        # (F,) on standardized features
    mean: np.ndarray           # (F,) feature standardization (the fit's candidates)
    std: np.ndarray
    features: tuple[str, ...] = FEATURES
    metrics: dict = field(default_factory=dict)
    manifest: dict = field(default_factory=dict)  # model, judge and codebook versions it was fit for

    def score(self, feats: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """(U, C) scores of features (U, C, F); -inf where not `valid`."""
        return np.where(valid, ((feats - self.mean) / self.std) @ self.weights, -np.inf)

    def save(self, path: str, extra: dict | None = None) -> None:
        os.makedirs(path, exist_ok=True)
        body = {"features": list(self.features), "weights": self.weights.tolist(), "mean": self.mean.tolist(),
                "std": self.std.tolist(), "metrics": self.metrics, **self.manifest, **(extra or {})}
        tmp = os.path.join(path, RANKER_FILE + ".tmp")
        with open(tmp, "w") as f:
            json.dump(body, f, indent=1, sort_keys=True)
        os.replace(tmp, os.path.join(path, RANKER_FILE))

    @staticmethod
    def load(path: str) -> "Ranker":
        with open(os.path.join(path, RANKER_FILE)) as f:
            body = json.load(f)
        if tuple(body["features"]) != FEATURES:
            raise ValueError(f"ranker at {path} has features {body['features']}, this code {list(FEATURES)}")
        manifest = {k: v for k, v in body.items() if k not in ("features", "weights", "mean", "std", "metrics")}
        return Ranker(np.asarray(body["weights"]), np.asarray(body["mean"]), np.asarray(body["std"]), FEATURES,
                      body["metrics"], manifest)


def _softmax_stats(x: np.ndarray, valid: np.ndarray, w: np.ndarray):
    s = np.where(valid, x @ w, -np.inf)
    s = s - s.max(axis=1, keepdims=True)
    p = np.exp(s)
    p /= p.sum(axis=1, keepdims=True)
    return s, p


def _loss(x, valid, target, w, l2) -> float:
    s, _ = _softmax_stats(x, valid, w)
    rows = np.arange(len(target))
    return float(-(s[rows, target] - np.log(np.exp(s).sum(axis=1))).mean() + 0.5 * l2 * w @ w)


def fit_ranker(feats: np.ndarray, valid: np.ndarray, target: np.ndarray, l2: float = 1e-3,
               max_iter: int = 50, tol: float = 1e-8) -> Ranker:
    """Weights maximizing the mean log-softmax of the target candidate among each user's valid candidates
    (Newton's method with backtracking; convex). feats (U, C, F), valid (U, C) bool, target (U,) column of
    the held-out item among the candidates, -1 where it is not one (those users carry no signal: skipped)."""
    keep = (target >= 0)
    if not keep.any():
        raise ValueError("no user has the held-out item among the candidates: nothing to fit the ranker on")
    if not valid[keep, target[keep]].all():
        raise ValueError("a target column points at an invalid candidate")
    flat = feats[valid]
    mean, std = flat.mean(axis=0), np.maximum(flat.std(axis=0), 1e-9)
    x = np.where(valid[keep][..., None], (feats[keep] - mean) / std, 0.0)
    v, t = valid[keep], target[keep]
    rows = np.arange(len(t))
    w = np.zeros(x.shape[-1])
    loss = _loss(x, v, t, w, l2)
    for _ in range(max_iter):
        _, p = _softmax_stats(x, v, w)
        ex = np.einsum("uc,ucf->uf", p, x)
        grad = (ex - x[rows, t]).mean(axis=0) + l2 * w
        exx = np.einsum("uc,ucf,ucg->fg", p, x, x) / len(t)
        hess = exx - ex.T @ ex / len(t) + l2 * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        size = 1.0
        while size > 1e-6:
            new = _loss(x, v, t, w - size * step, l2)
            if new <= loss:
                break
            size *= 0.5
        w, gain, loss = w - size * step, loss - new, new
        if gain < tol:
            break
    return Ranker(w, mean, std, FEATURES)


def target_columns(cands: np.ndarray, valid: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(U,) column of each user's target among its valid candidates, -1 where absent."""
    hit = (cands == targets[:, None]) & valid
    return np.where(hit.any(axis=1), hit.argmax(axis=1), -1)


def ranked_metrics(scores: np.ndarray, target: np.ndarray, k: int) -> dict[str, float]:
    """Recall@k and NDCG@k of candidate scores (U, C) (-inf = not servable) for target columns (U,) (-1: the
    item is not a candidate, a miss). Ties rank by column, as a stable sort of the candidates would."""
    u = np.flatnonzero(target >= 0)
    ts = scores[u, target[u]]
    cols = np.arange(scores.shape[1])
    ahead = (scores[u] > ts[:, None]) | ((scores[u] == ts[:, None]) & (cols[None, :] < target[u, None]))
    rank = 1 + ahead.sum(axis=1)
    inside = rank <= k
    n = max(len(target), 1)
    return {f"recall@{k}": float(inside.sum() / n), f"ndcg@{k}": float((1.0 / np.log2(rank[inside] + 1)).sum() / n)}
