"""Config of serving post-processing and of the `recommend` stage."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from genrec_model.baselines.config import ContentKNNConfig

@dataclass(frozen=True)
class TransitionConfig:
    """Item-to-item transition counts (serve/transitions.py): a successor `distance` positions after an item
    (1..window) adds decay ** (distance - 1); each item keeps its top_n successors; a history is read through
    its n_recent newest items, weighted recent_decay ** j (j = 0 newest). Defaults picked on Beauty's
    validation split, the `transition` baseline alone (README)."""
    window: int = 5
    decay: float = 0.7
    top_n: int = 100
    n_recent: int = 5
    recent_decay: float = 0.6

    def __post_init__(self) -> None:
        if self.window < 1 or self.top_n < 1 or self.n_recent < 1:
            raise ValueError(f"transitions: window, top_n and n_recent must be >= 1, got {self}")
        if not (0.0 < self.decay <= 1.0 and 0.0 < self.recent_decay <= 1.0):
            raise ValueError(f"transitions: decay and recent_decay must be in (0, 1], got {self}")


@dataclass(frozen=True)
class ServingConfig:
    top_k: int = 10
    filter_seen: bool = True
    fusion_weight: float = 0.0  # w in [0, 1]; 0 = model scores only
    prior: Literal["popularity", "category"] = "popularity"
    adaptive: bool = False
    category_penalty: float = 0.5  # category prior factor per already placed item of the same category
    popularity_alpha: float = 1.0  # add-alpha smoothing of the popularity prior
    fill_with_popular: bool = True  # complete lists shorter than top_k with popular unseen items
    # TIGER's cold-start protocol: round(new_item_share * top_k) slots of each list are kept for the best
    # items the model never saw in training (a second constrained search over them); 0 = no reservation
    new_item_share: float = 0.0
    # log-prob added to items the model never saw in training before ranking (0 = none): the model never
    # saw them as targets, so it under-scores them as a group; picked on validation
    new_item_boost: float = 0.0
    # the decoded candidates' scores plus judge_weight * the semantic judge's score (`genrec run judge`) before
    # ranking: the SFT model's beams re-ranked by the judge (0 = off; chosen on validation with
    # benchmarks/judge_rerank.py)
    judge_weight: float = 0.0
    # the decoded candidates re-ranked by the learned ranker (`genrec run ranker`, serve/ranker.py): weights over
    # the log-prob, the judge's score and its aspects, fit on validation users; replaces judge_weight's sum
    ranker: bool = False
    # the item-to-item transition counts the ranker's transition features read (and the `transition` baseline)
    transitions: TransitionConfig = field(default_factory=TransitionConfig)
    # with serving.ranker: per user, this many items the model never saw in training, the closest in content to
    # the user's recent items (new_item_knn), join the candidates, scored by the ranker's new-item features
    # (serve/new_items.py; the ranker's fit draws warm items as pseudo-new to learn them); 0 = none
    new_item_candidates: int = 0
    new_item_knn: ContentKNNConfig = field(default_factory=ContentKNNConfig)

    @property
    def uses_new_items(self) -> bool:
        """Whether lists need the search over items the model never saw in training."""
        return self.new_item_share > 0 or self.new_item_boost != 0

    def __post_init__(self) -> None:
        if (self.top_k < 1 or not 0.0 <= self.fusion_weight <= 1.0 or not 0.0 < self.category_penalty <= 1.0
                or not 0.0 <= self.new_item_share <= 1.0 or self.judge_weight < 0):
            raise ValueError(f"invalid serving config {self}")
        if self.new_item_candidates < 0 or (self.new_item_candidates and not self.ranker):
            raise ValueError("serving.new_item_candidates needs serving.ranker (its new-item features score them), "
                             f"got {self.new_item_candidates} with ranker={self.ranker}")
        if self.new_item_candidates and self.uses_new_items:
            raise ValueError("serving.new_item_candidates replaces the new-item search of new_item_share / "
                             "new_item_boost under the ranker: set one")
        if self.ranker and self.judge_weight:
            raise ValueError("serving.ranker and serving.judge_weight are two re-rankings of the same candidates: "
                             "set one (the ranker already weighs the judge's score)")
        if self.prior not in ("popularity", "category"):
            raise ValueError(f"prior must be 'popularity' or 'category', got {self.prior!r}")


@dataclass(frozen=True)
class RankerFitConfig:
    """`genrec run ranker`: fits serving.ranker's weights on validation users' decoded candidates."""
    users: int = 20_000               # validation users sampled (seeded by user id), whose target is not a new item
    l2: float = 1e-3
    seed: int = 0
    threads: int = 2                  # onnxruntime threads of the driver's decode
    # the judge re-rank (log-prob + alpha * judge) the ranker is compared with, alpha chosen on the fit half
    compare_alphas: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0, 3.0)
    k: int = 10                       # cut-off of the reported Recall/NDCG
    # with serving.new_item_candidates: the share of warm items the fit treats as new (serve/new_items.py); it is
    # also the share of next items the ranker learns to expect on new items
    pseudo_new_share: float = 0.05

    def __post_init__(self) -> None:
        if not 0.0 <= self.pseudo_new_share < 1.0:
            raise ValueError(f"recommend.ranker_fit.pseudo_new_share must be in [0, 1), got {self.pseudo_new_share}")
        if self.users < 2 or self.l2 < 0:
            raise ValueError(f"invalid recommend.ranker_fit {self}")


@dataclass(frozen=True)
class RecommendConfig:
    model_version: str = ""           # empty = the latest trained (and exported) model
    model_name: str = "genrec"        # value of the `model` column
    judge_version: str = ""           # the judge of serving.judge_weight; empty = the latest
    ranker_version: str = ""          # the ranker of serving.ranker; empty = the latest (it names its judge)
    ranker_fit: RankerFitConfig = field(default_factory=RankerFitConfig)
    beam_width: int = 20
    candidates: int = 20              # decoded items per user before seen-item filtering (<= beam_width)
    users_per_call: int = 32          # users per onnxruntime call (x beam rows); the children-only head needs no
                                      # (rows, vocabulary) buffer, so larger calls pay: decode_bench 886 vs 788 users/s at 8
    new_item_beam: int = 10           # beam (and candidates) of the new-item search (serving.new_item_share)
    constrained: bool = True          # False: no trie (ablation); non-catalog SIDs decode to no item
    # beam scores: "auto" = as the model was trained (item_softmax "prefix" -> "children", else "level");
    # "children" also decodes a level-trained model with the children-only head (decode/fused_head.py)
    normalize: str = "auto"
    serving: ServingConfig = field(default_factory=ServingConfig)
    # serve: next items after the whole history; test / valid: with the last / last two items held
    # out, so `evaluate` measures exactly this code path.
    splits: list[str] = field(default_factory=lambda: ["serve"])
    partitions: int = 2
    use_gpu: bool | None = None       # None: CUDA only when a GPU is really present

    def __post_init__(self) -> None:
        bad = set(self.splits) - {"serve", "test", "valid"}
        if bad:
            raise ValueError(f"recommend.splits: unknown {sorted(bad)} (serve, test, valid)")
        if self.normalize not in ("auto", "level", "children"):
            raise ValueError(f"recommend.normalize must be auto, level or children, got {self.normalize!r}")
        if not self.serving.top_k <= self.candidates <= self.beam_width:
            raise ValueError("need serving.top_k <= candidates <= beam_width")
