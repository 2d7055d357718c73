"""Config of the alignment stages (torch-free): the semantic judge and the A2PO policy step."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


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
class PolicyConfig:
    """Post-training of the generator (`genrec run align`, genrec_model/align/a2po.py)."""
    # how the group's rewards become advantages: "a2po" (business advantage plus the semantic one where the
    # signs agree, scaled so it never outweighs the business part), "business" (the business reward only),
    # "reward_sum" (business + semantic_weight * judge score, normalized together: the naive baseline)
    mode: Literal["a2po", "business", "reward_sum"] = "a2po"
    model_version: str = ""          # the SFT model to align; empty = the latest trained (not aligned) one
    judge_version: str = ""          # empty = the latest judge
    steps: int = 300                 # optimizer steps (the budget; the best step is chosen on validation)
    users_per_step: int = 32         # groups per step; examples are (training prefix, next item) pairs
    group_size: int = 16             # candidates per user: the policy's trie-constrained beams
    lr: float = 3e-5                 # validation, Beauty: 1e-4 and 3e-4 drift (N@10 down from step 50)
    weight_decay: float = 0.0
    kl_beta: float = 1e-3            # KL(policy || SFT model) on the group's tokens (k3 estimator)
    # business reward: value of the observed next item when generated (1, or the item's value column), and
    # -rank_penalty / log2(rank + 2) for a wrong candidate at beam rank `rank` (0 = the policy's top beam)
    rank_penalty: float = 0.0        # validation, Beauty: .5 lowered N@10 (it turns the lower wrong beams of a
                                     # group without the item into positives once normalized)
    # put the observed next item into a group whose beams missed it (in place of the last beam), so every
    # group carries the business signal; off = pure on-policy groups (MiniOneRec)
    include_target: bool = False
    value_column: str = ""           # catalog column holding an item value (price, bid); empty = hits count 1
    judge_share: float = 0.25        # share of groups scored by the judge (the rest: business advantage only)
    semantic_weight: float = 1.0     # reward_sum only
    advantage_eps: float = 1e-6
    valid_every: int = 50            # steps between validation passes (Recall/NDCG@10 on train.valid_users)
    monitor: str = "ndcg@10"
    max_examples: int = 200_000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in ("a2po", "business", "reward_sum"):
            raise ValueError(f"align.policy.mode must be a2po, business or reward_sum, got {self.mode!r}")
        if self.group_size < 2:
            raise ValueError("align.policy.group_size must be >= 2 (advantages are relative within a group)")
        if not 0.0 <= self.judge_share <= 1.0:
            raise ValueError(f"align.policy.judge_share must be in [0, 1], got {self.judge_share}")
        if self.steps < 1 or self.valid_every < 1:
            raise ValueError("align.policy.steps and valid_every must be >= 1")

    @property
    def uses_judge(self) -> bool:
        return self.mode != "business" and self.judge_share > 0


@dataclass(frozen=True)
class AlignConfig:
    judge: JudgeConfig = JudgeConfig()
    policy: PolicyConfig = PolicyConfig()
