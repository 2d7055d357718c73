"""Beam search over Semantic-ID levels: a plain numpy reference and a Numba fast path.

Per user: encode the history once (prefill), then for each level d = 0..L-1 score every allowed code
of that level for every live beam (beam score + log-softmax of the level, or of the beam's trie children
with normalize="children"), keep the best `beam_width` candidates, reorder the model state by parent beam
and feed the chosen tokens. After L levels the beams are full SIDs = items; the best `top_k` are returned
with their summed log-probabilities. With normalize="children" and a model that returns hidden states
(the shared-prefix ONNX model), the fast path computes only the children's logits (decode/fused_head.py).

Tie rule (both paths): candidates are ranked by score descending, then by flat index
`parent_beam * level_size + code` ascending. Beams with score -inf (or NaN) are dead: they return
item -1, and for the model they repeat beam 0 (parent and code) so every row stays a valid prefix.
"""
from __future__ import annotations

from typing import Any, Protocol, Sequence

import numba
import numpy as np

from genrec_model.decode.config import BeamSearchConfig
from genrec_model.decode.constraints import Constraint, NoConstraint
from genrec_model.decode.fused_head import child_head, topk_children_fused
from genrec_model.decode.item_query import item_level_hidden
from genrec_model.decode.top_width import insert_candidate
from genrec_model.decode.trie import SidTrie


class StepModel(Protocol):
    def prefill(self, input_ids: np.ndarray, attention_mask: np.ndarray, position_ids: np.ndarray) -> tuple[np.ndarray, Any]:
        """(B, T) left-padded histories -> logits (B, V) for the next position, state."""
        ...

    def step(self, tokens: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
        """tokens (N,) appended to each row -> logits (N, V), state."""
        ...

    def reorder(self, state: Any, rows: np.ndarray) -> Any:
        """Gather state rows (N',) (also expands B users to B * beam)."""
        ...

    # Optional: a model with `accepts_head_ids = True` takes `step(tokens, state, head_ids=ids)` and
    # returns logits for those token ids only, (N, len(ids)); the fast path then asks for the next
    # level's range (normalize="level"), skipping the rest of the LM head.


def level_logsumexp(logits: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """(N, V) -> (N,) float64 log-sum-exp of logits[:, lo:hi] (shared by both paths, so ties match).

    exp runs in the logits' dtype (float32 from the model: SIMD, no float64 copy of a (N, items)
    slice for item-level vocabularies); the sum and log are float64. Error vs float64 is ~1e-8.
    """
    x = logits[:, lo:hi]
    m = x.max(axis=1)
    m = np.where(np.isfinite(m), m, 0).astype(x.dtype)
    with np.errstate(divide="ignore"):
        return m.astype(np.float64) + np.log(np.exp(x - m[:, None]).sum(axis=1, dtype=np.float64))


def _norm_range(cfg: BeamSearchConfig, lo: int, size: int, vocab_size: int) -> tuple[int, int]:
    return (lo, lo + size) if cfg.normalize == "level" else (0, vocab_size)


def _topk_items(items: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """First k entries per row with item >= 0 and finite score, order kept, padded with -1 / -inf."""
    valid = (items >= 0) & (scores > -np.inf)
    rank = np.cumsum(valid, axis=1) - 1
    out_i = np.full((items.shape[0], k), -1, dtype=np.int64)
    out_s = np.full((items.shape[0], k), -np.inf, dtype=np.float64)
    r, c = np.nonzero(valid & (rank < k))
    out_i[r, rank[r, c]] = items[r, c]
    out_s[r, rank[r, c]] = scores[r, c]
    return out_i, out_s


def stable_top(cand: np.ndarray, width: int) -> np.ndarray:
    """(B, N) -> (B, min(width, N)) column indices, exactly `np.argsort(-cand, kind="stable")[:, :width]`.

    Wide rows (unconstrained item levels: beams x catalog) are cut with a partition first; every
    candidate tied with the width-th best is kept, so the stable sort of the survivors is the same.
    """
    n = cand.shape[1]
    if n <= 4 * width:
        return np.argsort(-cand, axis=1, kind="stable")[:, :width]
    kth = -np.partition(-cand, width - 1, axis=1)[:, width - 1]  # width-th best score per row
    out = np.empty((cand.shape[0], width), dtype=np.int64)
    for r in range(cand.shape[0]):
        keep = np.flatnonzero(cand[r] >= kth[r])  # ascending index: ties keep their order
        out[r] = keep[np.argsort(-cand[r, keep], kind="stable")[:width]]
    return out


def beam_search_reference(
    model: StepModel,
    constraint: Constraint,
    trie: SidTrie,
    level_starts: Sequence[int],
    input_ids: np.ndarray,
    attention_mask: np.ndarray,
    position_ids: np.ndarray,
    cfg: BeamSearchConfig = BeamSearchConfig(),
) -> tuple[np.ndarray, np.ndarray]:
    """Source of truth. Returns (B, top_k) item indices (-1 if none) and float64 scores, best first.

    `trie` only maps finished code tuples to items (tuples that are not items are dropped, which
    matters for `NoConstraint`); the constraint decides what may be decoded.
    """
    _needs_fused(model, "the reference search")
    n_users, width, n_levels = input_ids.shape[0], cfg.beam_width, trie.n_levels
    logits, state = model.prefill(input_ids, attention_mask, position_ids)
    scores = np.zeros((n_users, 1))  # (B, R) beam scores, R = 1 before the first level
    prefixes = np.zeros((n_users, 1, 0), dtype=np.int64)  # (B, R, d)
    for d in range(n_levels):
        n_rows, size, lo = scores.shape[1], trie.level_sizes[d], level_starts[d]
        if cfg.normalize == "children":  # log-softmax over what the constraint allows
            masked = constraint(prefixes.reshape(n_users * n_rows, d), logits[:, lo : lo + size].astype(np.float64))
            lse = level_logsumexp(masked, 0, size)
            masked = np.where(np.isfinite(lse)[:, None], masked - np.where(np.isfinite(lse), lse, 0)[:, None], -np.inf)
        else:
            lse = level_logsumexp(logits, *_norm_range(cfg, lo, size, logits.shape[1]))
            logp = logits[:, lo : lo + size].astype(np.float64) - lse[:, None]  # (B*R, S)
            masked = constraint(prefixes.reshape(n_users * n_rows, d), logp)
        cand = (scores.reshape(-1, 1) + masked).reshape(n_users, n_rows * size)  # (B, R*S)
        cand[~(scores > -np.inf).repeat(size, axis=1)] = -np.inf
        order = stable_top(cand, width)  # (B, W') W' = min(W, R*S)
        top = np.take_along_axis(cand, order, axis=1)
        alive = top > -np.inf
        parent = np.where(alive, order // size, (order // size)[:, :1])
        code = np.where(alive, order % size, (order % size)[:, :1])
        prefixes = np.concatenate([np.take_along_axis(prefixes, parent[:, :, None], axis=1), code[:, :, None]], axis=2)
        scores = np.where(alive, top, -np.inf)
        if d < n_levels - 1:
            state = model.reorder(state, (np.arange(n_users)[:, None] * n_rows + parent).ravel())
            logits, state = model.step((code + lo).ravel(), state)
    items = trie.lookup(prefixes.reshape(-1, n_levels)).reshape(n_users, -1)
    return _topk_items(items, scores, cfg.top_k)


@numba.njit(cache=True)
def topk_children(logits, lo, lse, scores, nodes, n_rows, width, indptr, child_code, child_norm, allowed):
    """Best `width` children per user over its `n_rows` beam rows, never building a (rows, vocab) mask.

    logits (B*R, V) float32/64; lse, scores (B*R,) float64; nodes (B*R,) int64 (-1 = dead); child_norm:
    normalize over each node's children (else by `lse`); allowed (n_children,) bool: children that may be
    chosen (all of them still count in the normalization).
    Returns parent (B, W) local beam index, code, child node and score; -1 / -1 / -1 / -inf where dead.
    Candidates are visited in ascending flat index, so a later equal score never overtakes.
    """
    n_users = nodes.shape[0] // n_rows
    parent = np.full((n_users, width), -1, dtype=np.int64)
    code = np.full((n_users, width), -1, dtype=np.int64)
    child = np.full((n_users, width), -1, dtype=np.int64)
    best = np.full((n_users, width), -np.inf)
    for b in range(n_users):
        count = 0
        worst = -np.inf  # score a candidate must beat once the beam is full
        for r in range(n_rows):
            row = b * n_rows + r
            node = nodes[row]
            base = scores[row]
            if node < 0 or not (base > -np.inf):
                continue
            norm = lse[row]
            if child_norm:  # log-softmax over this node's children only (prefix-conditioned)
                m = -np.inf
                for j in range(indptr[node], indptr[node + 1]):
                    m = max(m, np.float64(logits[row, lo + child_code[j]]))
                acc = 0.0
                for j in range(indptr[node], indptr[node + 1]):
                    acc += np.exp(np.float64(logits[row, lo + child_code[j]]) - m)
                norm = m + np.log(acc)
            for j in range(indptr[node], indptr[node + 1]):
                if not allowed[j]:
                    continue
                c = child_code[j]
                s = base + (np.float64(logits[row, lo + c]) - norm)
                if not (s > worst):
                    continue
                count = insert_candidate(best, parent, code, child, b, width, count, s, r, c, j)
                if count == width:
                    worst = best[b, width - 1]
    return parent, code, child, best


def beam_search_fast(
    model: StepModel,
    trie: SidTrie,
    level_starts: Sequence[int],
    input_ids: np.ndarray,
    attention_mask: np.ndarray,
    position_ids: np.ndarray,
    cfg: BeamSearchConfig = BeamSearchConfig(),
    allowed: tuple[np.ndarray, ...] | None = None,
    first_level: bool = False,
):
    """Trie-constrained beam search with the Numba kernel; same output as the reference + TrieConstraint.
    allowed (`SidTrie.subtree_allowed`): only those items are returned, scored as in the unrestricted search.
    first_level: also return (B, level_sizes[0]) log-probs of every first-level code, normalized as the search
    normalizes level 0 (-inf for codes no item starts with)."""
    n_users, width, n_levels = input_ids.shape[0], cfg.beam_width, trie.n_levels
    allowed = trie.subtree_allowed(None) if allowed is None else allowed
    if cfg.normalize == "children" and hasattr(model, "step_hidden"):
        return _beam_search_fused(model, trie, level_starts, input_ids, attention_mask, position_ids, cfg, allowed,
                                  first_level)
    _needs_fused(model, f"normalize={cfg.normalize!r}")
    logits, state = model.prefill(input_ids, attention_mask, position_ids)
    level0 = _first_level_from_logits(logits, trie, level_starts[0], cfg) if first_level else None
    scores = np.zeros(n_users)  # (B*R,)
    nodes = np.zeros(n_users, dtype=np.int64)
    n_rows = 1
    sliced = cfg.normalize in ("level", "children") and getattr(model, "accepts_head_ids", False)
    col0 = 0  # token id of logits column 0
    for d in range(n_levels):
        size, lo = trie.level_sizes[d], level_starts[d] - col0
        if cfg.normalize == "children":  # the kernel normalizes per node
            lse = np.zeros(logits.shape[0])
        else:
            lse = level_logsumexp(logits, *_norm_range(cfg, lo, size, logits.shape[1]))
        parent, code, child, best = topk_children(
            logits, lo, lse, scores, nodes, n_rows, width, trie.indptr[d], trie.child_code[d],
            cfg.normalize == "children", allowed[d])
        parent, code = _dead_follow_first(parent, code)
        scores, nodes = best.ravel(), child.ravel()
        if d < n_levels - 1:
            state = model.reorder(state, (np.arange(n_users)[:, None] * n_rows + parent).ravel())
            tokens = (code + level_starts[d]).ravel()
            if sliced:
                col0 = level_starts[d + 1]
                head = np.arange(col0, col0 + trie.level_sizes[d + 1], dtype=np.int64)
                logits, state = model.step(tokens, state, head_ids=head)
            else:
                logits, state = model.step(tokens, state)
        n_rows = width
    items = np.where(nodes >= 0, trie.leaf_item[np.maximum(nodes, 0)], -1).reshape(n_users, width)
    out = _topk_items(items, scores.reshape(n_users, width), cfg.top_k)
    return out + (level0,) if first_level else out


def _first_level_from_logits(logits: np.ndarray, trie: SidTrie, lo: int, cfg: BeamSearchConfig) -> np.ndarray:
    """(B, level_sizes[0]) level-0 log-probs from prefill logits (B, V) whose column 0 is token 0."""
    codes = trie.child_code[0][trie.indptr[0][0]:trie.indptr[0][1]].astype(np.int64)
    x = logits[:, lo + codes].astype(np.float64)
    if cfg.normalize == "children":
        lse = level_logsumexp(x, 0, x.shape[1])
    else:
        lse = level_logsumexp(logits, *_norm_range(cfg, lo, trie.level_sizes[0], logits.shape[1]))
    out = np.full((logits.shape[0], trie.level_sizes[0]), -np.inf)
    out[:, codes] = x - lse[:, None]
    return out


def _needs_fused(model, what: str) -> None:
    """An item_query "user"/"attend" model scores the item level from the user state (no step per beam): only the
    fused children-only search knows that; any other path would score it from a decoder step."""
    if getattr(model, "item_query_tables", None) is not None:
        raise ValueError(f"a model trained with item_query='user'/'attend' decodes with the fused children-only search "
                         f"(normalize='children', trie fast path), not {what}")


def _dead_follow_first(parent: np.ndarray, code: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dead beams (parent -1) repeat beam 0's parent and code, so every row stays a valid prefix."""
    alive = parent >= 0
    return (np.where(alive, parent, np.maximum(parent[:, :1], 0)), np.where(alive, code, np.maximum(code[:, :1], 0)))


def _beam_search_fused(model, trie: SidTrie, level_starts, input_ids, attention_mask, position_ids,
                       cfg: BeamSearchConfig, allowed: tuple[np.ndarray, ...], first_level: bool = False):
    """beam_search_fast for a model that returns hidden states (`prefill_hidden`/`step_hidden` and
    `head_weight`/`head_bias`): each level scores only the live beams' trie children (fused_head.py)."""
    n_users, width, n_levels = input_ids.shape[0], cfg.beam_width, trie.n_levels
    heads = child_head(trie, model.head_weight, model.head_bias, level_starts)
    tables = getattr(model, "item_query_tables", None)  # item level scored from the user state, no step
    if tables is not None and n_levels != 2:
        raise ValueError(f"item_query='user'/'attend' decoding needs 2-level SIDs (prefix, item), got {n_levels}")
    hidden, state = model.prefill_hidden(input_ids, attention_mask, position_ids)
    level0 = None
    if first_level:  # the root's children are level 0's first block of heads[0]: one small product
        codes = trie.child_code[0][trie.indptr[0][0]:trie.indptr[0][1]].astype(np.int64)
        x = (hidden @ heads[0][0][:len(codes)].T + heads[0][1][:len(codes)]).astype(np.float64)
        level0 = np.full((n_users, trie.level_sizes[0]), -np.inf)
        level0[:, codes] = x - level_logsumexp(x, 0, x.shape[1])[:, None]
    scores = np.zeros(n_users)
    nodes = np.zeros(n_users, dtype=np.int64)
    n_rows = 1
    for d in range(n_levels):
        parent, code, child, best = topk_children_fused(
            hidden, heads[d][0], heads[d][1], scores, nodes, n_rows, width, trie.indptr[d], trie.child_code[d],
            trie.max_children(d), allowed[d])
        parent, code = _dead_follow_first(parent, code)
        scores, nodes = best.ravel(), child.ravel()
        if d < n_levels - 1:
            rows = (np.arange(n_users)[:, None] * n_rows + parent).ravel()
            tokens = (code + level_starts[d]).ravel()
            if tables is not None:  # no transformer step: user state + prefix shift (+ history read)
                hidden = item_level_hidden(hidden, rows, tokens, tables, state.item_kv, model.n_head,
                                           model.layer_norm_eps)
            else:
                state = model.reorder(state, rows)
                hidden, state = model.step_hidden(tokens, state)
        n_rows = width
    items = np.where(nodes >= 0, trie.leaf_item[np.maximum(nodes, 0)], -1).reshape(n_users, width)
    out = _topk_items(items, scores.reshape(n_users, width), cfg.top_k)
    return out + (level0,) if first_level else out


def left_pad(histories: Sequence[np.ndarray], pad_id: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Token sequences -> left-padded input_ids, attention_mask, position_ids (B, T) int64."""
    if not histories or min(len(h) for h in histories) == 0:
        raise ValueError("need at least one history and no empty history")
    t = max(len(h) for h in histories)
    ids = np.full((len(histories), t), pad_id, dtype=np.int64)
    mask = np.zeros((len(histories), t), dtype=np.int64)
    for i, h in enumerate(histories):
        ids[i, t - len(h) :] = h
        mask[i, t - len(h) :] = 1
    pos = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
    return ids, mask, pos


def decode(
    model: StepModel,
    trie: SidTrie,
    level_starts: Sequence[int],
    histories: Sequence[np.ndarray],
    cfg: BeamSearchConfig = BeamSearchConfig(),
    pad_id: int = 0,
    constraint: Constraint | None = None,
    allowed_items: np.ndarray | None = None,
    first_level: bool = False,
):
    """Decode many users, `cfg.users_per_call` per model call: (U, top_k) items, scores (and, with first_level,
    (U, level_sizes[0]) log-probs of every first-level code: the generator's distribution over semantic
    prefixes, which scores an item it never generated, e.g. a new one, by its prefix).

    `constraint=None` runs the trie fast path (or, with `cfg.constrained=False`, the reference search
    with `NoConstraint()`: the unconstrained ablation); any other constraint runs the reference search.
    Users are batched in order of history length (less left padding, so shorter KV caches); results
    come back in the input order. allowed_items (N,) bool (trie fast path only): return only those items,
    with the scores the unrestricted search gives them (e.g. the items the model never saw in training).
    """
    if constraint is None and not cfg.constrained:
        constraint = NoConstraint()
    if allowed_items is not None and constraint is not None:
        raise ValueError("allowed_items needs the trie fast path (no custom constraint, constrained=True)")
    if first_level and constraint is not None:
        raise ValueError("first_level needs the trie fast path (no custom constraint, constrained=True)")
    allowed = trie.subtree_allowed(allowed_items)
    order = np.argsort([len(h) for h in histories], kind="stable")
    items = np.full((len(histories), cfg.top_k), -1, dtype=np.int64)
    scores = np.full((len(histories), cfg.top_k), -np.inf)
    level0 = np.full((len(histories), trie.level_sizes[0]), -np.inf) if first_level else None
    for s in range(0, len(histories), cfg.users_per_call):
        idx = order[s : s + cfg.users_per_call]
        batch = left_pad([histories[i] for i in idx], pad_id)
        if constraint is None:
            out = beam_search_fast(model, trie, level_starts, *batch, cfg, allowed, first_level)
            items[idx], scores[idx] = out[:2]
            if first_level:
                level0[idx] = out[2]
        else:
            items[idx], scores[idx] = beam_search_reference(model, constraint, trie, level_starts, *batch, cfg)
    return (items, scores, level0) if first_level else (items, scores)
