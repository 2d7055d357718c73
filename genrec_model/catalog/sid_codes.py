"""Semantic-ID collision resolution, SID strings and codebook statistics.

Two schemes (docs/CONTRACTS.md):
- `dedup` (TIGER): semantic codes (L levels) + a dedup digit; items sharing a semantic tuple get
  0, 1, 2, ... ordered by item key.
- `hybrid` (SIGMA-style): the first `prefix_levels` semantic codes + an item-specific token
  (a global per-item counter, ordered by item key), so the final level has >= N values.

Incremental and stable: items in `existing` keep their stored code tuple exactly. New items get
one past the largest digit/token already used (over *all* of `existing`, retired items included),
so a code that once named an item is never handed to another one.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

Scheme = Literal["dedup", "hybrid"]
LEVEL_LETTERS = "abcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class SidAssignment:
    codes: np.ndarray  # (N, L_out) int32, unique rows, in the order of item_keys
    level_sizes: list[int]  # distinct values per level, for SidVocab
    scheme: Scheme
    n_new: int  # items that got a fresh code in this call
    n_stale: int  # existing items whose stored prefix no longer matches their semantic prefix

    def as_dict(self, item_keys: Sequence[str]) -> dict[str, tuple[int, ...]]:
        return {k: tuple(int(c) for c in row) for k, row in zip(item_keys, self.codes)}


def assign_sids(
    semantic_codes: np.ndarray,
    item_keys: Sequence[str],
    codebook_size: int,
    scheme: Scheme = "dedup",
    prefix_levels: int | None = None,
    existing: Mapping[str, Sequence[int]] | None = None,
) -> SidAssignment:
    """Give every item a unique code tuple.

    semantic_codes (N, L) from the RQ-VAE; item_keys (N,) unique strings (e.g. item_id);
    prefix_levels (hybrid only, default L) semantic levels kept before the item token;
    existing: item key -> previously assigned full code tuple (output of an earlier run).
    """
    sem = np.asarray(semantic_codes)
    n, n_levels = sem.shape
    if len(item_keys) != n:
        raise ValueError(f"{len(item_keys)} item keys for {n} code rows")
    if len(set(item_keys)) != n:
        raise ValueError("item_keys must be unique")
    if sem.size and (sem.min() < 0 or sem.max() >= codebook_size):
        raise ValueError(f"semantic codes outside [0, {codebook_size})")
    if scheme == "dedup":
        n_prefix = n_levels
    elif scheme == "hybrid":
        n_prefix = n_levels if prefix_levels is None else prefix_levels
        if not 0 <= n_prefix <= n_levels:
            raise ValueError(f"prefix_levels must be in [0, {n_levels}], got {prefix_levels}")
    else:
        raise ValueError(f"unknown scheme {scheme!r} (expected 'dedup' or 'hybrid')")
    out_len = n_prefix + 1
    existing = dict(existing or {})
    seen_tuples: set[tuple[int, ...]] = set()
    for key, code in existing.items():
        code = tuple(int(c) for c in code)
        if len(code) != out_len:
            raise ValueError(f"existing code for {key!r} has {len(code)} levels, scheme needs {out_len}")
        if code in seen_tuples:
            raise ValueError(f"existing assignments are not unique: {code} used twice")
        seen_tuples.add(code)
        existing[key] = code

    # next free last-level value: per prefix (dedup) or one global counter (hybrid)
    next_free: dict[tuple[int, ...], int] = defaultdict(int)
    next_token = 0
    for code in existing.values():
        next_free[code[:-1]] = max(next_free[code[:-1]], code[-1] + 1)
        next_token = max(next_token, code[-1] + 1)

    codes = np.empty((n, out_len), dtype=np.int64)
    new_rows = []
    n_stale = 0
    for i, key in enumerate(item_keys):
        prefix = tuple(int(c) for c in sem[i, :n_prefix])
        if key in existing:
            codes[i] = existing[key]
            n_stale += existing[key][:-1] != prefix
        else:
            codes[i, :n_prefix] = prefix
            new_rows.append(i)
    for i in sorted(new_rows, key=lambda r: item_keys[r]):  # deterministic: by item key
        prefix = tuple(int(c) for c in codes[i, :n_prefix])
        if scheme == "dedup":
            codes[i, -1] = next_free[prefix]
            next_free[prefix] += 1
        else:
            codes[i, -1] = next_token
            next_token += 1
    issued = np.vstack([codes] + ([np.asarray(list(existing.values()))] if existing else []))
    return SidAssignment(
        codes=codes.astype(np.int32), level_sizes=level_sizes_of(issued, codebook_size),
        scheme=scheme, n_new=len(new_rows), n_stale=int(n_stale),
    )


def level_sizes_of(codes: np.ndarray, codebook_size: int) -> list[int]:
    """Vocabulary level sizes for a set of issued code tuples (N, L): the semantic levels span the
    codebook, the last (dedup digit or item token) one past the largest value issued. Pass every tuple
    still reserved (retired items too) so a token never names two items over time."""
    codes = np.asarray(codes)
    last = int(codes[:, -1].max()) + 1 if codes.size else 1
    return [int(codebook_size)] * (codes.shape[1] - 1) + [last]


def sid_string(codes: Sequence[int]) -> str:
    """(3, 7, 0) -> '<a_3><b_7><c_0>'."""
    return "".join(f"<{LEVEL_LETTERS[level]}_{int(c)}>" for level, c in enumerate(codes))


def parse_sid(s: str) -> tuple[int, ...]:
    """Inverse of sid_string; raises ValueError on a malformed string or out-of-order levels."""
    if not (s.startswith("<") and s.endswith(">")):
        raise ValueError(f"malformed SID {s!r}")
    out = []
    for level, tok in enumerate(s[1:-1].split("><")):
        letter, sep, num = tok.partition("_")
        if sep != "_" or letter != LEVEL_LETTERS[level] or not num.isdigit():
            raise ValueError(f"malformed SID {s!r} at level {level}")
        out.append(int(num))
    return tuple(out)


@dataclass(frozen=True)
class SidStats:
    n_items: int
    collision_rate: float  # share of items whose full semantic tuple is shared with another item
    n_unique_tuples: int
    utilization: list[float]  # per level: distinct codes / codebook_size
    max_items_per_prefix: list[int]  # index p-1: largest group sharing the first p codes
    n_dedup_digits: int  # dedup digits needed = largest group sharing the full tuple


def sid_stats(semantic_codes: np.ndarray, codebook_size: int) -> SidStats:
    """Statistics of raw (pre-dedup) semantic codes (N, L)."""
    sem = np.asarray(semantic_codes)
    n, n_levels = sem.shape
    max_per_prefix = []
    for p in range(1, n_levels + 1):
        _, counts = np.unique(sem[:, :p], axis=0, return_counts=True)
        max_per_prefix.append(int(counts.max()) if n else 0)
    _, inverse, counts = np.unique(sem, axis=0, return_inverse=True, return_counts=True)
    shared = counts[inverse.reshape(-1)] > 1
    return SidStats(
        n_items=n,
        collision_rate=float(shared.mean()) if n else 0.0,
        n_unique_tuples=int(len(counts)),
        utilization=[len(np.unique(sem[:, level])) / codebook_size for level in range(n_levels)],
        max_items_per_prefix=max_per_prefix,
        n_dedup_digits=max_per_prefix[-1] if n else 0,
    )
