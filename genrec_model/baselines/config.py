"""Config of the reference models (SASRec-CE, most popular, content-knn)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class SASRecConfig:
    """SASRec size. `n_items` follows from the catalog (the baselines job fills it; leave it 0 in YAML)."""
    n_items: int = 0
    max_len: int = 50
    d_model: int = 64
    n_layer: int = 2
    n_head: int = 2
    d_ff: int = 256
    dropout: float = 0.5  # RecBole's Beauty setting: hidden and attention dropout 0.5
    init_std: float = 0.02


@dataclass(frozen=True)
class SASRecTrainConfig:
    # lr and batch_size: best of a small sweep on Beauty under a ~15 min CPU budget
    # (benchmarks/sasrec_beauty.py; RecBole uses 1e-3 and 2048 one-target examples)
    lr: float = 3e-3
    weight_decay: float = 0.0
    batch_size: int = 64  # sequences (windows) per step
    max_epochs: int = 200
    patience: int = 10  # epochs without a validation gain before stopping
    eval_k: int = 10
    eval_every: int = 1
    # process CPU seconds, checked after each epoch: on a shared machine wall time would mostly
    # measure the neighbours (with threads=1, CPU time = the model's own compute)
    time_budget_s: float = float("inf")
    threads: int = 1  # torch threads (small matmuls: more threads spin on a busy machine)
    seed: int = 0
    bucket_batches: int = 50  # batches sorted by length together, to cut padding
    eval_batch_size: int = 1024
    # bfloat16 autocast incl. logits and softmax: x1.8 per train step on Beauty (AVX512-BF16 CPU;
    # benchmarks/sasrec_beauty.py --time-steps)
    bf16: bool = False


@dataclass(frozen=True)
class ContentKNNConfig:
    """content-knn (baselines/content_knn.py): a candidate's score is the recency-weighted mean cosine
    similarity of its text embedding to the user's last `n_recent` items, weights decay**j (j = 0 newest).
    Defaults picked on Beauty's validation split (cold share .05, all users, MiniLM embeddings): R@10 .0584 /
    N@10 .0350; n_recent 1-10 at decay .2-.4 all within .0005 R@10, decay .8 at n 10 gave .0477."""
    n_recent: int = 5
    decay: float = 0.2

    def __post_init__(self) -> None:
        if self.n_recent < 1:
            raise ValueError(f"baselines.content_knn.n_recent must be >= 1, got {self.n_recent}")
        if not 0.0 < self.decay <= 1.0:
            raise ValueError(f"baselines.content_knn.decay must be in (0, 1], got {self.decay}")


@dataclass(frozen=True)
class BaselinesConfig:
    """Reference models evaluated on the same splits by the same `evaluate` code. With
    data.cold_item_share > 0, popularity and SASRec never see an interaction with a withheld item;
    content_knn reads only item text embeddings (the embed stage's `item_embeddings`)."""
    # transition: item-to-item transition counts (recommend.serving.transitions, the table genrec's ranker reads)
    models: list[Literal["popularity", "sasrec", "content_knn", "transition"]] = field(
        default_factory=lambda: ["popularity", "sasrec"])
    sasrec: SASRecConfig = field(default_factory=SASRecConfig)
    sasrec_train: SASRecTrainConfig = field(default_factory=SASRecTrainConfig)
    content_knn: ContentKNNConfig = field(default_factory=ContentKNNConfig)
