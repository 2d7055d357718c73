"""What the baselines learn from and rank for, under the cold-start protocol (data.cold_item_share).

A withheld ("cold") item's interactions are removed from everything a baseline learns from: the
training prefixes (most-popular counts, SASRec windows) and the validation examples SASRec stops on.
The evaluation cases keep each user's full history: at ranking time a history may hold cold items
(they are real events; seen-item filtering uses them), and each model decides what it can read of it
(SASRec: only items it trained, see `warm_only`; content-knn: every item, from its text).
Split positions always come from the full sequence, so targets are the ones `evaluate` scores.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from genrec_model.data.splits import Example, split_sequence


def warm_only(items: np.ndarray, cold: np.ndarray) -> np.ndarray:
    """`items` (item indices) without the cold ones; cold: (N,) bool per item index."""
    items = np.asarray(items, dtype=np.int64)
    return items[~cold[items]] if len(items) else items


@dataclass(frozen=True)
class BaselineData:
    train: list[np.ndarray]                    # per user: training prefix, cold items removed
    valid_train: list[Example]                 # early-stopping examples: warm target, warm history (non-empty)
    cases: dict[str, list[tuple[int, Example]]]  # split -> (user index, example with the FULL history)
    cold_events_dropped: int                   # training-prefix events removed because their item is cold


def baseline_data(sequences: Sequence[np.ndarray], cold: np.ndarray) -> BaselineData:
    """sequences: per user item indices, oldest first (all interactions); cold: (N,) bool per item."""
    cold = np.asarray(cold, dtype=bool)
    parts = [split_sequence(s, 10 ** 9) for s in sequences]
    train = [warm_only(p[0], cold) for p in parts]
    dropped = sum(len(p[0]) for p in parts) - sum(len(t) for t in train)
    valid_train = []
    for _, valid, _ in parts:
        if valid is None or cold[valid.target]:
            continue
        hist = warm_only(valid.history, cold)
        if len(hist):
            valid_train.append(Example(hist, valid.target))
    cases = {"test": [(u, p[2]) for u, p in enumerate(parts) if p[2] is not None],
             "valid": [(u, p[1]) for u, p in enumerate(parts) if p[1] is not None]}
    return BaselineData(train, valid_train, cases, int(dropped))
