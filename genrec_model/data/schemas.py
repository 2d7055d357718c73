"""Every table genrec writes, declared once: name, Arrow schema, partitioning, write mode.

The Delta layer enforces these on write (column set, order, types, nullability)
and the readers of other stages rely on them. Timestamps are UTC microseconds; `run_date` is a
DATE (Arrow date32, Spark DateType, Delta `date`) wherever it appears. Run dates travel as
'YYYY-MM-DD' text through configs, CLIs, logs and paths; `run_date_value` turns that text into the
column value (the one place it is converted). Tables written while run_date was a string are
rewritten once by the next job that writes them (udfs/table_migrations.py).
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Literal

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")
RUN_DATE = pa.date32()  # the type of every run_date column
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def run_date_value(value: str | dt.date) -> dt.date:
    """The `run_date` column value of a run date given as 'YYYY-MM-DD' text (config, CLI) or a date.

    Strict: only the ISO calendar form is accepted ('2024-1-5', '20240105', datetimes are refused),
    so a value never changes meaning between Spark, delta-rs and DuckDB.
    """
    if isinstance(value, dt.datetime):
        raise TypeError(f"run_date must be a date or 'YYYY-MM-DD', not the datetime {value!r}")
    if isinstance(value, dt.date):
        return value
    text = str(value)
    if not _ISO_DATE.fullmatch(text):
        raise ValueError(f"run_date {value!r} is not a YYYY-MM-DD date")
    try:
        return dt.date.fromisoformat(text)
    except ValueError as e:
        raise ValueError(f"run_date {value!r} is not a YYYY-MM-DD date: {e}") from None


@dataclass(frozen=True)
class TableSpec:
    name: str
    schema: pa.Schema
    partition_by: tuple[str, ...] = ()
    # snapshot: each write replaces the whole table; partition: each write replaces the
    # partitions it carries (e.g. one run_date); append: rows are added (audit logs).
    write_mode: Literal["snapshot", "partition", "append"] = "snapshot"
    description: str = ""

    @property
    def columns(self) -> list[str]:
        return self.schema.names

    @property
    def data_schema(self) -> pa.Schema:
        """The schema of the Parquet files: partition columns live in the Delta log, not the files."""
        return pa.schema([f for f in self.schema if f.name not in self.partition_by])


def _f(name: str, type_: pa.DataType, nullable: bool = True) -> pa.Field:
    return pa.field(name, type_, nullable=nullable)


CATALOG = TableSpec(
    "catalog",
    pa.schema([
        _f("item_id", pa.string(), False),
        _f("title", pa.string(), False),
        _f("brand", pa.string()),
        _f("categories", pa.list_(pa.string())),
        _f("description", pa.string()),
        _f("price", pa.float64()),
        _f("text_hash", pa.string(), False),
    ]),
    description="One row per item: cleaned text fields and a hash of the item text.",
)

INTERACTIONS = TableSpec(
    "interactions",
    pa.schema([
        _f("user_id", pa.string(), False),
        _f("item_id", pa.string(), False),
        _f("timestamp", TS),               # null where the source has no timestamps
        _f("seq_pos", pa.int64(), False),  # 0-based chronological position within the user's history
        _f("rating", pa.float64()),
    ]),
    description="User-item events; order a user's history by seq_pos.",
)

REJECTS = TableSpec(
    "rejects",
    pa.schema([
        _f("run_id", pa.string(), False),
        _f("source", pa.string(), False),  # catalog | interactions
        _f("reason", pa.string(), False),
        _f("record", pa.string()),         # the raw input row as JSON
        _f("run_date", RUN_DATE, False),
    ]),
    partition_by=("run_date",),
    write_mode="partition",
    description="Input rows the ingest refused, with the reason; input = accepted + rejected.",
)

ITEM_EMBEDDINGS = TableSpec(
    "item_embeddings",
    pa.schema([
        _f("item_id", pa.string(), False),
        _f("embedding", pa.list_(pa.float32()), False),
        _f("model_name", pa.string(), False),
        _f("text_hash", pa.string(), False),      # catalog.text_hash the vector was computed from
        _f("template_hash", pa.string(), False),  # hash of the text template used
        _f("updated_at", TS, False),
    ]),
    description="Text embedding per catalog item; re-embedded only when its text, template or model changes.",
)

ITEM_SIDS = TableSpec(
    "item_sids",
    pa.schema([
        _f("item_id", pa.string(), False),
        _f("codes", pa.list_(pa.int32()), False),  # full code tuple, unique per item
        _f("sid", pa.string(), False),             # <a_99><b_225><c_67><d_0>
        _f("codebook_version", pa.string(), False),
        _f("scheme", pa.string(), False),          # dedup | hybrid
    ]),
    description="Semantic ID per item; one codebook version per table snapshot.",
)

REC_ITEM = pa.struct([pa.field("item_id", pa.string(), False), pa.field("score", pa.float64(), False),
                      pa.field("rank", pa.int32(), False)])

RECOMMENDATIONS = TableSpec(
    "recommendations",
    pa.schema([
        _f("user_id", pa.string(), False),
        _f("recs", pa.list_(REC_ITEM), False),    # best first
        _f("is_fallback", pa.bool_(), False),     # popularity list for a cold or unknown history
        _f("model_version", pa.string(), False),
        _f("codebook_version", pa.string()),
        _f("generated_at", TS, False),
        _f("run_date", RUN_DATE, False),
        # serve: from the full history (what nearline serving reads); test / valid: with the
        # last / last two items held out, for evaluation of exactly the served code path.
        _f("split", pa.string(), False),
        _f("model", pa.string(), False),          # genrec, or a baseline (popularity, sasrec, ...)
    ]),
    partition_by=("run_date", "split", "model"),
    write_mode="partition",
    description="Top-K items per user per run date; serving reads split='serve' and model='genrec'.",
)

METRICS = TableSpec(
    "metrics",
    pa.schema([
        _f("run_id", pa.string(), False),
        _f("dataset", pa.string(), False),
        _f("model", pa.string(), False),
        _f("split", pa.string(), False),
        # all | warm | cold (cold-start protocol, data.cold_item_share > 0: cold = users whose held-out item
        # is a withheld item); only `all` when no item is withheld. Tables written before this column
        # existed are migrated by the evaluate job (udfs/table_migrations.py: segment = all).
        _f("segment", pa.string(), False),
        _f("metric", pa.string(), False),
        _f("k", pa.int32()),
        _f("value", pa.float64()),
        _f("config_hash", pa.string(), False),
        _f("run_date", RUN_DATE, False),
    ]),
    partition_by=("run_date",),
    write_mode="partition",
    description="Evaluation of the recommendations of one run date: one row per model, split, segment, metric, K.",
)

JOB_RUNS = TableSpec(
    "job_runs",
    pa.schema([
        _f("run_id", pa.string(), False),
        _f("job", pa.string(), False),
        _f("run_date", RUN_DATE, False),
        _f("dataset", pa.string()),
        _f("config_hash", pa.string(), False),
        _f("status", pa.string(), False),  # succeeded | failed
        _f("started_at", TS, False),
        _f("seconds", pa.float64(), False),
        _f("inputs", pa.map_(pa.string(), pa.int64())),   # table -> Delta version read
        _f("outputs", pa.map_(pa.string(), pa.int64())),  # table -> Delta version written
        _f("counts", pa.map_(pa.string(), pa.float64())),
        _f("error", pa.string()),
    ]),
    write_mode="append",
    description="One row per job run, for audits of nightly runs and backfills.",
)

TABLES: dict[str, TableSpec] = {t.name: t for t in (CATALOG, INTERACTIONS, REJECTS, ITEM_EMBEDDINGS, ITEM_SIDS, RECOMMENDATIONS, METRICS,
                                            JOB_RUNS)}

