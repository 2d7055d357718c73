"""Config of the alignment stage's semantic judge (torch-free)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class JudgeConfig:
    recency_decay: float = 0.8        # weight of the k-th most recent history item: decay ** k
    max_history: int = 20
    max_train_examples: int = 200_000  # (history prefix, next item) pairs sampled from training prefixes
    negatives_popular: int = 2        # per positive, drawn in proportion to training popularity
    negatives_similar: int = 2        # per positive, from the positive's semantic prefix (a category proxy)
    eval_negatives: int = 20          # per held-out next item, for each AUC (random and hard)
    epochs: int = 4
    lr: float = 0.01
    batch_size: int = 1024
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.recency_decay <= 1.0:
            raise ValueError(f"judge.recency_decay must be in (0, 1], got {self.recency_decay}")
        if self.negatives_popular + self.negatives_similar < 1:
            raise ValueError("judge needs at least one negative per positive")


@dataclass(frozen=True)
class AlignConfig:
    judge: JudgeConfig = JudgeConfig()
