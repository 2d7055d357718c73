"""Leave-one-out split as TIGER/P5 use it on the Amazon 5-core data.

For a user sequence [i1 .. in] (oldest first): test target in with history
i1..i(n-1); validation target i(n-1) with history i1..i(n-2); training uses the
prefix i1..i(n-2). Histories are truncated to the most recent `max_len` items.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

# Events held out at the end of each user's sequence, per split: `test` predicts the last event from
# the rest, `valid` the second-to-last, `serve` (production lists) predicts past the whole history.
HELD_OUT = {"serve": 0, "test": 1, "valid": 2}


def min_events(split: str) -> int:
    """Events a user needs to have a target in `split` (its held-out events plus one of history)."""
    return HELD_OUT[split] + 1 if HELD_OUT[split] else 0


def split_history(seq: np.ndarray, split: str) -> np.ndarray:
    """The events of one user sequence that a split's histories hold (all of them before its held-out ones;
    none for a user too short to have the split's target): the numpy twin of the rule in
    udfs/split_fns.histories_df and history_item_counts."""
    seq = np.asarray(seq)
    if len(seq) < min_events(split):
        return seq[:0]
    return seq[: len(seq) - HELD_OUT[split]]


def cold_item_mask(item_ids, share: float, seed: int | str) -> np.ndarray:
    """(N,) bool: which items are withheld as new (`data.cold_item_share`). An item's draw depends only on
    (seed, item_id) — never on the catalog or its order — so every stage and run agrees. The twin Spark
    expression is udfs/split_fns.cold_item_col; both take the first 8 hex digits of
    sha256("<seed>:<item_id>") as a uniform draw in [0, 1)."""
    if share <= 0:
        return np.zeros(len(item_ids), dtype=bool)
    draws = [int(hashlib.sha256(f"{seed}:{i}".encode()).hexdigest()[:8], 16) / 2 ** 32 for i in item_ids]
    return np.asarray(draws, dtype=np.float64) < share


@dataclass(frozen=True)
class Example:
    history: np.ndarray  # (<= max_len,) item indices, oldest first
    target: int


def split_sequence(seq: np.ndarray, max_len: int) -> tuple[np.ndarray, Example | None, Example | None]:
    """Return (train_prefix, valid_example, test_example) for one user sequence.

    Users with fewer than 3 items get no validation example; fewer than 2, no test.
    The train prefix is the full sequence minus the held-out items (not truncated:
    training code slides its own windows over it).
    """
    seq = np.asarray(seq)
    n = len(seq)
    t, v = HELD_OUT["test"], HELD_OUT["valid"]
    test = Example(seq[max(0, n - t - max_len): n - t], int(seq[-t])) if n >= min_events("test") else None
    valid = Example(seq[max(0, n - v - max_len): n - v], int(seq[-v])) if n >= min_events("valid") else None
    train_prefix = seq[: max(n - v, 0)] if n >= min_events("valid") else seq[: max(n - t, 0)]
    return train_prefix, valid, test
