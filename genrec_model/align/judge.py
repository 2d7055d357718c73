"""Personalized semantic judge (S-GRec's PSJ, two stages), trained offline on training prefixes only.

Stage 1, interpretable evidence per aspect between a candidate item and a user's history, from the items'
text embeddings (unit vectors) and training popularity:
- profile: recency-weighted mean cosine between the candidate and the history items (long-term taste);
- context: cosine with the most recent item (the session's intent);
- closest: the largest cosine with any history item (an item like one the user already chose);
- novelty: 1 - closest (how new the candidate is to this user; weights are non-negative, so a judge that
  rewards novelty for some users and closeness for others needs both);
- popularity: standardized log(1 + training count) of the candidate.
Stage 2, a user-conditional aggregation: non-negative aspect weights that sum to 1,
softmax(features(user) @ W + b), features = the recency-weighted mean history embedding, log history length
and the history's mean popularity; learned with a pairwise logistic loss (observed next item vs sampled
popular and same-prefix negatives). `score` (numpy only: decode workers load no torch) is what alignment and the serving re-rank
(`serving.judge_weight`) call; `evaluate` gives pairwise AUCs on
held-out next items against random and hard (same-prefix) negatives, per aspect and with uniform weights.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from genrec_model.align.config import JudgeConfig

ASPECTS = ("profile", "context", "closest", "novelty", "popularity")
WEIGHTS_FILE, MANIFEST_FILE = "judge.npz", "judge.json"


@dataclass(frozen=True)
class ItemSide:
    """What the judge knows of the catalog: unit text embeddings (N, d), standardized log popularity (N,) and
    each item's semantic prefix id (N,) (the hard-negative group)."""
    unit: np.ndarray
    log_pop: np.ndarray
    prefix: np.ndarray

    @staticmethod
    def build(embeddings: np.ndarray, popularity: np.ndarray, prefix: np.ndarray) -> "ItemSide":
        e = np.asarray(embeddings, dtype=np.float32)
        unit = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
        return ItemSide(unit, _standard_log(popularity), np.asarray(prefix, dtype=np.int64))

    def with_popularity(self, popularity: np.ndarray) -> "ItemSide":
        """The same items under other popularity counts (e.g. one recommend split's histories)."""
        return replace(self, log_pop=_standard_log(popularity))

    @staticmethod
    def from_training(embeddings: np.ndarray, train_prefixes: list[np.ndarray], codes: np.ndarray):
        """The judge's view of a catalog: popularity counted on users' training prefixes only, the first
        semantic level as the category proxy. Returns (ItemSide, popularity (N,))."""
        counts = [np.asarray(p, dtype=np.int64) for p in train_prefixes if len(p)]
        popularity = np.bincount(np.concatenate(counts) if counts else np.zeros(0, np.int64),
                                 minlength=len(codes)).astype(np.float64)
        return ItemSide.build(embeddings, popularity, prefix=np.asarray(codes)[:, 0]), popularity


def _standard_log(popularity: np.ndarray) -> np.ndarray:
    lp = np.log1p(np.asarray(popularity, dtype=np.float64))
    return ((lp - lp.mean()) / max(lp.std(), 1e-12)).astype(np.float32)


def pad_histories(histories: list[np.ndarray], max_history: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-aligned (B, T) item indices (most recent last) and mask; every history must be non-empty."""
    t = min(max_history, max(len(h) for h in histories))
    idx = np.zeros((len(histories), t), dtype=np.int64)
    mask = np.zeros((len(histories), t), dtype=bool)
    for r, h in enumerate(histories):
        h = np.asarray(h, dtype=np.int64)[-t:]
        if not len(h):
            raise ValueError("the judge needs a non-empty history")
        idx[r, t - len(h):], mask[r, t - len(h):] = h, True
    return idx, mask


def _recency(mask: np.ndarray, decay: float) -> np.ndarray:
    age = np.arange(mask.shape[1])[::-1]
    w = np.where(mask, decay ** age, 0.0)
    return (w / w.sum(axis=1, keepdims=True)).astype(np.float32)


def aspect_evidence(items: ItemSide, hist: np.ndarray, mask: np.ndarray, cands: np.ndarray, decay: float) -> np.ndarray:
    """(B, C, len(ASPECTS)) evidence of candidates (B, C) for right-aligned histories (B, T)."""
    sims = np.einsum("bcd,btd->bct", items.unit[cands], items.unit[hist])  # (B, C, T)
    w = _recency(mask, decay)
    profile = (sims * w[:, None, :]).sum(axis=-1)
    context = sims[:, :, -1]
    closest = np.where(mask[:, None, :], sims, -np.inf).max(axis=-1)
    return np.stack([profile, context, closest, 1.0 - closest, items.log_pop[cands]], axis=-1).astype(np.float32)


def user_features(items: ItemSide, hist: np.ndarray, mask: np.ndarray, decay: float, max_history: int) -> np.ndarray:
    """(B, d + 2): recency-weighted mean history embedding, log length (scaled to [0, 1]), mean popularity."""
    w = _recency(mask, decay)
    taste = np.einsum("bt,btd->bd", w, items.unit[hist])
    n = mask.sum(axis=1)
    length = np.log1p(n) / np.log1p(max_history)
    pop = (items.log_pop[hist] * mask).sum(axis=1) / n
    return np.concatenate([taste, length[:, None], pop[:, None]], axis=1).astype(np.float32)


@dataclass
class SemanticJudge:
    weight: np.ndarray          # (F, A)
    bias: np.ndarray            # (A,)
    mean: np.ndarray            # (A,) evidence standardization (training pairs)
    std: np.ndarray
    config: JudgeConfig
    metrics: dict = field(default_factory=dict)
    manifest: dict = field(default_factory=dict)  # what `save` wrote next to the weights (versions, dataset)

    def aspect_weights(self, feats: np.ndarray) -> np.ndarray:
        z = feats @ self.weight + self.bias
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def score_evidence(self, evid: np.ndarray, feats: np.ndarray, uniform: bool = False) -> np.ndarray:
        """(B, C) judge scores of standardized evidence (B, C, A) (uniform: weights 1/A for every user)."""
        std = (evid - self.mean) / self.std
        w = np.full((len(feats), len(ASPECTS)), 1.0 / len(ASPECTS)) if uniform else self.aspect_weights(feats)
        return (std * w[:, None, :]).sum(axis=-1)

    def score(self, items: ItemSide, histories: list[np.ndarray], cands: np.ndarray) -> np.ndarray:
        """(B, C) scores of candidate item indices (B, C) for item-index histories (oldest first)."""
        hist, mask = pad_histories(histories, self.config.max_history)
        d, m = self.config.recency_decay, self.config.max_history
        return self.score_evidence(aspect_evidence(items, hist, mask, cands, d), user_features(items, hist, mask, d, m))

    def save(self, path: str, extra: dict | None = None) -> None:
        os.makedirs(path, exist_ok=True)
        np.savez(os.path.join(path, WEIGHTS_FILE), weight=self.weight, bias=self.bias, mean=self.mean, std=self.std)
        with open(os.path.join(path, MANIFEST_FILE), "w") as f:
            json.dump({"aspects": list(ASPECTS), "config": asdict(self.config), "metrics": self.metrics,
                       **(extra or {})}, f, indent=1, sort_keys=True)

    @staticmethod
    def load(path: str) -> "SemanticJudge":
        with open(os.path.join(path, MANIFEST_FILE)) as f:
            manifest = json.load(f)
        if tuple(manifest["aspects"]) != ASPECTS:
            raise ValueError(f"judge at {path} has aspects {manifest['aspects']}, this code {list(ASPECTS)}")
        with np.load(os.path.join(path, WEIGHTS_FILE)) as z:
            return SemanticJudge(z["weight"], z["bias"], z["mean"], z["std"], JudgeConfig(**manifest["config"]),
                                 manifest["metrics"], manifest)


def next_item_examples(sequences: list[np.ndarray], max_examples: int, rng: np.random.Generator):
    """(history, next item) pairs at every position >= 1 of the given (training) sequences, sampled down."""
    pairs = [(u, t) for u, s in enumerate(sequences) for t in range(1, len(s))]
    if len(pairs) > max_examples:
        pairs = [pairs[i] for i in np.sort(rng.choice(len(pairs), max_examples, replace=False))]
    return [sequences[u][:t] for u, t in pairs], np.asarray([sequences[u][t] for u, t in pairs], dtype=np.int64)


def sample_negatives(items: ItemSide, positives: np.ndarray, popularity: np.ndarray, n_popular: int, n_similar: int,
                     rng: np.random.Generator) -> np.ndarray:
    """(B, n_popular + n_similar) negatives: popularity-proportional draws and draws from the positive's
    semantic prefix (uniform over the catalog where the prefix holds no other item); never the positive."""
    n = len(items.prefix)
    p = np.asarray(popularity, dtype=np.float64) + 1e-3
    out = [rng.choice(n, size=(len(positives), n_popular), p=p / p.sum())] if n_popular else []
    if n_similar:
        order = np.argsort(items.prefix, kind="stable")
        starts = np.searchsorted(items.prefix[order], items.prefix[positives], side="left")
        ends = np.searchsorted(items.prefix[order], items.prefix[positives], side="right")
        pick = starts[:, None] + (rng.random((len(positives), n_similar)) * (ends - starts)[:, None]).astype(np.int64)
        out.append(order[np.minimum(pick, n - 1)])
    neg = np.concatenate(out, axis=1)
    clash = neg == positives[:, None]
    neg[clash] = rng.integers(0, n, clash.sum())
    return np.where(neg == positives[:, None], (neg + 1) % n, neg)


def _features(items: ItemSide, histories, cands, cfg: JudgeConfig, chunk: int = 4096):
    evid, feats = [], []
    for s in range(0, len(histories), chunk):
        hist, mask = pad_histories(histories[s:s + chunk], cfg.max_history)
        evid.append(aspect_evidence(items, hist, mask, cands[s:s + chunk], cfg.recency_decay))
        feats.append(user_features(items, hist, mask, cfg.recency_decay, cfg.max_history))
    return np.concatenate(evid), np.concatenate(feats)


def fit_judge(items: ItemSide, histories: list[np.ndarray], positives: np.ndarray, popularity: np.ndarray,
              cfg: JudgeConfig) -> SemanticJudge:
    """Stage 2 on (history, observed next item) pairs from training prefixes."""
    import torch  # scoring (`SemanticJudge.score`, used by decode workers) is numpy only
    import torch.nn.functional as F

    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    neg = sample_negatives(items, positives, popularity, cfg.negatives_popular, cfg.negatives_similar, rng)
    evid, feats = _features(items, histories, np.concatenate([positives[:, None], neg], axis=1), cfg)
    mean = evid.reshape(-1, len(ASPECTS)).mean(axis=0)
    std = np.maximum(evid.reshape(-1, len(ASPECTS)).std(axis=0), 1e-6)
    ev = torch.from_numpy((evid - mean) / std)
    ft = torch.from_numpy(feats)
    w = torch.zeros(ft.shape[1], len(ASPECTS), requires_grad=True)
    b = torch.zeros(len(ASPECTS), requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=cfg.lr)
    for _ in range(cfg.epochs):
        for idx in torch.randperm(len(ev)).split(cfg.batch_size):
            a = torch.softmax(ft[idx] @ w + b, dim=1)  # (B, A)
            s = (ev[idx] * a[:, None, :]).sum(-1)  # (B, 1 + K)
            loss = -F.logsigmoid(s[:, :1] - s[:, 1:]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return SemanticJudge(w.detach().numpy(), b.detach().numpy(), mean.astype(np.float32), std.astype(np.float32), cfg)


def pairwise_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Share of (positive, negative) pairs ranked right; ties count half. pos (B,), neg (B, K)."""
    return float(((pos[:, None] > neg) + 0.5 * (pos[:, None] == neg)).mean())


def evaluate_judge(judge: SemanticJudge, items: ItemSide, histories: list[np.ndarray], targets: np.ndarray,
                   seed: int = 1) -> dict:
    """AUCs on held-out next items vs `eval_negatives` random and same-prefix negatives: the learned judge,
    uniform aspect weights and each aspect alone."""
    cfg = judge.config
    rng = np.random.default_rng(seed)
    k = cfg.eval_negatives
    negatives = {"random": sample_negatives(items, targets, np.ones(len(items.prefix)), k, 0, rng),
                 "hard": sample_negatives(items, targets, np.ones(len(items.prefix)), 0, k, rng)}
    out = {}
    for kind, neg in negatives.items():
        evid, feats = _features(items, histories, np.concatenate([targets[:, None], neg], axis=1), cfg)
        for name, s in (("judge", judge.score_evidence(evid, feats)),
                        ("uniform", judge.score_evidence(evid, feats, uniform=True)),
                        *((a, evid[:, :, i]) for i, a in enumerate(ASPECTS))):
            out[f"auc_{kind}.{name}"] = pairwise_auc(s[:, 0], s[:, 1:])
    out["mean_aspect_weights"] = dict(zip(ASPECTS, judge.aspect_weights(feats).mean(axis=0).round(4).tolist()))
    return out
