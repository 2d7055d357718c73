"""Migration of a `metrics` table written before the `segment` column existed (cold-start evaluation).

The Delta store refuses a write whose declared schema differs from the table's ("migrate or write
elsewhere") and has no schema evolution of its own, so the evaluate job migrates in place, keeping the
table's history (time travel still reaches the old versions):

1. add the column as table metadata: `ALTER TABLE ... ADD COLUMNS (segment STRING AFTER split)` through
   the Delta connector (native backend), `DeltaTable.alter.add_columns` with delta-rs; old files have
   no such column and read as null;
2. rewrite the run dates holding rows without a segment with segment = `all` (what every pre-segment
   metric measured: all users), one partition-replace commit through the store.

Both steps are idempotent: an interrupted migration finishes on the next evaluate run.
"""
from __future__ import annotations

import logging

from genrec_model.data.schemas import METRICS

log = logging.getLogger("genrec.migration")

COLUMN = "segment"


def table_columns(store, spec) -> list[str] | None:
    """The columns of the table as stored (not as declared); None when the table does not exist."""
    if store.version(spec) is None:
        return None
    if store.native:
        return list(store.spark.read.format("delta").load(store.path(spec)).columns)
    from deltalake import DeltaTable

    table = DeltaTable(store.path(spec), storage_options=store.storage_options or None)
    return [f.name for f in table.schema().fields]


def _add_segment_column(store) -> None:
    path = store.path(METRICS)
    if store.native:
        quoted = path.replace("`", "``")
        store.spark.sql(f"ALTER TABLE delta.`{quoted}` ADD COLUMNS ({COLUMN} STRING AFTER split)")
    else:
        from deltalake import DeltaTable, Field

        DeltaTable(path, storage_options=store.storage_options or None).alter.add_columns(
            [Field(COLUMN, "string", nullable=True)])


def migrate_metrics_segment(store, metadata: dict[str, str] | None = None) -> list[str]:
    """Bring an existing `metrics` table to the declared schema; returns the run dates rewritten
    (empty when there is no table or nothing to do)."""
    from pyspark.sql import functions as F

    columns = table_columns(store, METRICS)
    if columns is None:
        return []
    if COLUMN not in columns:
        log.warning("metrics table at %s has no %s column: adding it (old rows become segment=all)",
                    store.path(METRICS), COLUMN)
        _add_segment_column(store)
    df, _ = store.read(METRICS)
    dates = sorted(str(r[0]) for r in df.where(F.col(COLUMN).isNull()).select("run_date").distinct().collect())
    if not dates:
        return []
    # materialized first (the table is small) so the rewrite never reads the files it replaces
    fixed = (df.where(F.col("run_date").cast("string").isin(dates))
             .withColumn(COLUMN, F.coalesce(F.col(COLUMN), F.lit("all"))).localCheckpoint(eager=True))
    result = store.write(fixed, METRICS, replace_partitions=[{"run_date": d} for d in dates],
                         metadata={**(metadata or {}), "genrec.migration": "metrics.segment"})
    log.warning("metrics table migrated: %d row(s) of run dates %s now carry segment=all", result.num_rows, dates)
    return dates
