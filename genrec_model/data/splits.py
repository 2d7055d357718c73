"""Leave-one-out split as TIGER/P5 use it on the Amazon 5-core data.

For a user sequence [i1 .. in] (oldest first): test target in with history
i1..i(n-1); validation target i(n-1) with history i1..i(n-2); training uses the
prefix i1..i(n-2). Histories are truncated to the most recent `max_len` items.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
    test = Example(seq[max(0, n - 1 - max_len): n - 1], int(seq[-1])) if n >= 2 else None
    valid = Example(seq[max(0, n - 2 - max_len): n - 2], int(seq[-2])) if n >= 3 else None
    train_prefix = seq[: max(n - 2, 0)] if n >= 3 else seq[: max(n - 1, 0)]
    return train_prefix, valid, test
