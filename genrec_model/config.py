"""The genrec config: `GenrecConfig` composes one frozen dataclass per stage, each defined next to its
stage (`genrec_model/<stage>/config.py`, none of which imports torch or numba), plus the
infrastructure sections below (Spark, lakehouse, artifacts).

Loaded from conf/*.yaml with `key=value` overrides (see config_loader); unknown keys are errors.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from genrec_model.align.config import AlignConfig
from genrec_model.baselines.config import BaselinesConfig
from genrec_model.catalog.config import EmbedConfig, SidsConfig
from genrec_model.config_loader import load_dataclass, stable_hash, to_dict
from genrec_model.data.config import DataConfig
from genrec_model.evaluation.config import EvaluateConfig
from genrec_model.model.config import ExportConfig, FitConfig
from genrec_model.serve.config import RecommendConfig


@dataclass(frozen=True)
class SparkConfig:
    master: str = "local[2]"          # ignored when spark-submit already set a master
    app_name: str = "genrec"
    shuffle_partitions: int = 8
    driver_memory: str = "4g"
    ui_enabled: bool = False
    extra_conf: dict[str, str] = field(default_factory=dict)
    # Folder with the Delta connector JARs (scripts/setup_env.sh fills <repo>/.jars); "" = $GENREC_DELTA_JARS,
    # else <repo>/.jars. Ignored under spark-submit, where --jars/--packages decide.
    delta_jars: str = ""


@dataclass(frozen=True)
class LakehouseConfig:
    root: str = "./lakehouse"         # each table lives at <root>/<table>
    # auto: the Delta Spark connector when the session has it, else Spark-written Parquet
    # committed by delta-rs. native / delta_rs force one path.
    delta_mode: Literal["auto", "native", "delta_rs"] = "auto"
    storage_options: dict[str, str] = field(default_factory=dict)
    commit_retries: int = 3
    # Layout for readers: after a job writes one of these tables, the partitions it wrote are Z-ordered
    # by the listed columns (OPTIMIZE ... ZORDER BY natively, optimize.z_order on delta-rs). {} = off.
    zorder: dict[str, list[str]] = field(default_factory=lambda: {"recommendations": ["user_id"]})
    # Z-order range-partitions rows into files of about this size (rows inside a file are not sorted),
    # so a single-user lookup reads about one file: small files for a lookup-served table.
    optimize_target_file_mb: float = 0.5
    optimize_row_group_mb: float | None = None   # Parquet row groups of the optimized files; null: writer default
    # Retention: after a successful run, VACUUM the tables it wrote, deleting data files that no version
    # younger than this needs (time travel further back stops working). null = never vacuum.
    vacuum_retention_hours: float | None = 168.0


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
    export: ExportConfig = field(default_factory=ExportConfig)
    recommend: RecommendConfig = field(default_factory=RecommendConfig)
    baselines: BaselinesConfig = field(default_factory=BaselinesConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    align: AlignConfig = field(default_factory=AlignConfig)
    run_date: str = ""                # YYYY-MM-DD; empty = today (UTC)
    start_date: str = ""              # with end_date: a backfill over [start_date, end_date]
    end_date: str = ""
    run_id: str = ""                  # empty = generated per run

    def __post_init__(self) -> None:
        from genrec_model.data.schemas import run_date_value  # the one parser of run dates (strict ISO)

        for name in ("run_date", "start_date", "end_date"):
            value = getattr(self, name)
            if value:
                try:
                    run_date_value(value)
                except ValueError as e:
                    raise ValueError(f"{name}={value!r} is not a YYYY-MM-DD date") from e
        if bool(self.start_date) != bool(self.end_date):
            raise ValueError("start_date and end_date go together (a backfill range)")
        if self.start_date and self.start_date > self.end_date:
            raise ValueError(f"start_date {self.start_date} is after end_date {self.end_date}")
        derived = {"train.model.vocab_size": (self.train.model.vocab_size, "the SID vocabulary (train job)"),
                   "baselines.sasrec.n_items": (self.baselines.sasrec.n_items, "the catalog (baselines job)"),
                   "sids.rqvae.input_dim": (self.sids.rqvae.input_dim, "the item embeddings (sids job)")}
        for key, (value, source) in derived.items():
            if value:
                raise ValueError(f"{key}={value}: derived from {source}; leave it 0 (unset) in configs")

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
