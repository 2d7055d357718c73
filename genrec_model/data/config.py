"""Config of the raw dataset read by `ingest` (format, files, validity ranges)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from genrec_model.config_loader import REQUIRED

DatasetFormat = Literal["amazon_p5", "lcrec", "movielens_csv", "ml100k_atomic"]


@dataclass(frozen=True)
class DataConfig:
    dataset: str = REQUIRED           # a short name recorded with the outputs
    format: DatasetFormat = "amazon_p5"
    path: str = REQUIRED              # folder (or, for ml100k_atomic, a recbole wheel) with the raw files
    # File names inside `path`; empty means the format's default names.
    files: dict[str, str] = field(default_factory=dict)
    item_text_html_unescape: bool = True
    # Timestamps outside this range are rejected (unix seconds).
    min_timestamp: int = 0
    max_timestamp: int = 4102444800   # 2100-01-01
    input_partitions: int = 4
    max_text_chars: int = 4000        # longer text fields are truncated
    # Which entry of an item's category path is "its category" (diversity metrics, category prior).
    # None: the first level with more than one distinct value (Amazon paths all start with the store).
    category_level: int | None = None
    # Cold-start evaluation (TIGER's protocol): this seeded share of the catalog is treated as items that
    # arrived overnight. Every interaction with them is withheld from what learns from interactions
    # (collaborative SID signal, training, baselines); their text stays in the catalog, so they get
    # embeddings and SIDs like any new item. evaluate reports the `cold` segment (test users whose
    # held-out item is one of them). 0 = off (production).
    cold_item_share: float = 0.0
    cold_seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.cold_item_share < 1.0:
            raise ValueError(f"data.cold_item_share must be in [0, 1), got {self.cold_item_share}")
