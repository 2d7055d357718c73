"""Migrations of existing tables to the declared schemas (genrec_model/data/schemas.py), run by the jobs.

The Delta store refuses a write whose declared schema differs from the table's ("migrate or write
elsewhere") and has no schema evolution of its own. Before a job's first write of a table in a run,
`migrate_table` brings an existing table to the declared schema with the migrations below, in this order;
each is a no-op on a table that needs nothing, so a second run does nothing. History is kept: time travel
still reaches the old versions.

`run_date` string -> date (every table with a run_date column: rejects, recommendations, metrics, job_runs)
    Tables written while run_date was declared a string are rewritten ONCE, whole, with run_date cast to
    a date, in one commit that also replaces the schema (the connector's `overwriteSchema`, delta-rs's
    overwrite with the new schema; `DeltaStore.rewrite`). Every stored value must be a YYYY-MM-DD date,
    else nothing is written. Rows are counted before and after; if the counts differ, or another writer
    committed between the read and the rewrite, the table is restored to the version before the rewrite
    and the job fails (`MigrationError`): no row is lost, the next run tries again.

`metrics.segment` (tables written before the cold-start segments)
    1. add the column as table metadata: `ALTER TABLE ... ADD COLUMNS (segment STRING AFTER split)` through
       the Delta connector (native backend), `DeltaTable.alter.add_columns` with delta-rs; old files have
       no such column and read as null;
    2. rewrite the run dates holding rows without a segment with segment = `all` (what every pre-segment
       metric measured: all users), one partition-replace commit through the store.
    Both steps are idempotent: an interrupted migration finishes on the next evaluate run.
"""
from __future__ import annotations

import dataclasses
import json
import logging

import pyarrow as pa

from genrec_model.data.schemas import METRICS, RUN_DATE, TableSpec, run_date_value

log = logging.getLogger("genrec.migration")

COLUMN = "segment"
RUN_DATE_COLUMN = "run_date"


class MigrationError(RuntimeError):
    """A migration found data it cannot convert, or could not prove it kept every row (nothing kept)."""


@dataclasses.dataclass(frozen=True)
class StoredTable:
    version: int
    schema: object                  # pyspark StructType, as the Delta log holds it
    partition_by: tuple[str, ...]


def stored_table(store, spec: TableSpec, version: int | None = None) -> StoredTable | None:
    """The table's schema and partition columns as stored (not as declared), at `version` (latest when
    None); None when the table does not exist."""
    from pyspark.sql.types import StructType

    version = store.version(spec) if version is None else version
    if version is None:
        return None
    path = store.path(spec)
    if store.native:
        from delta.tables import DeltaTable

        schema = store.spark.read.format("delta").option("versionAsOf", version).load(path).schema
        parts = DeltaTable.forPath(store.spark, path).detail().first()["partitionColumns"]
        return StoredTable(version, schema, tuple(parts))
    from deltalake import DeltaTable

    table = DeltaTable(path, version=version, storage_options=store.storage_options or None)
    schema = StructType.fromJson(json.loads(table.schema().to_json()))  # the Delta schema JSON is Spark's
    return StoredTable(version, schema, tuple(table.metadata().partition_columns))


def table_columns(store, spec) -> list[str] | None:
    """The columns of the table as stored (not as declared); None when the table does not exist."""
    stored = stored_table(store, spec)
    return None if stored is None else list(stored.schema.names)


def migrate_table(store, spec: TableSpec, metadata: dict[str, str] | None = None) -> dict[str, int]:
    """Every migration `spec`'s table may need, in order; returns what was done (empty: nothing), e.g.
    {"run_date_rows": 1200} or {"segment_run_dates": 2}."""
    done: dict[str, int] = {}
    rows = migrate_run_date(store, spec, metadata)
    if rows is not None:
        done["run_date_rows"] = rows
    if spec.name == METRICS.name:
        dates = migrate_metrics_segment(store, metadata)
        if dates:
            done["segment_run_dates"] = len(dates)
    return done


# ---------------------------------------------------------------------------------- run_date -> date
def _stored_spec(spec: TableSpec, stored: StoredTable) -> TableSpec:
    """A TableSpec for the table exactly as stored: its columns and types (declared Arrow types and
    non-null flags where the stored type is the declared one), its partitioning; written as a snapshot."""
    from pyspark.sql.pandas.types import to_arrow_schema

    from udfs.delta_store import spark_schema

    declared = {f.name: f for f in spark_schema(spec)}
    arrow = to_arrow_schema(stored.schema, timezone="UTC")
    fields = []
    for sf, af in zip(stored.schema.fields, arrow):
        same = sf.name in declared and declared[sf.name].dataType.simpleString() == sf.dataType.simpleString()
        fields.append(spec.schema.field(sf.name) if same else af.with_nullable(True))
    return dataclasses.replace(spec, schema=pa.schema(fields), partition_by=stored.partition_by,
                               write_mode="snapshot")


def migrate_run_date(store, spec: TableSpec, metadata: dict[str, str] | None = None) -> int | None:
    """Rewrite the table once with `run_date` as a date when it is stored as a string and declared a date;
    returns the rows rewritten, None when there was nothing to do (no table, no such column, already a
    date). Raises MigrationError, with the table unchanged, when a value is not a YYYY-MM-DD date, when the
    rewritten table does not hold the rows read, or when another writer committed in between."""
    from pyspark.sql import functions as F

    if RUN_DATE_COLUMN not in spec.columns or not pa.types.is_date(spec.schema.field(RUN_DATE_COLUMN).type):
        return None
    stored = stored_table(store, spec)
    if stored is None or RUN_DATE_COLUMN not in stored.schema.names:
        return None
    stored_type = stored.schema[RUN_DATE_COLUMN].dataType.simpleString()
    if stored_type != "string":
        return None  # a date already (or a type no migration knows: the store's schema check says so)
    path = store.path(spec)
    old = _stored_spec(spec, stored)
    new = dataclasses.replace(old, schema=old.schema.set(old.schema.get_field_index(RUN_DATE_COLUMN),
                                                         pa.field(RUN_DATE_COLUMN, RUN_DATE, False)))
    df, version = store.read(old, stored.version)
    values = [r[0] for r in df.select(RUN_DATE_COLUMN).distinct().collect()]
    bad = []
    for v in values:
        try:
            run_date_value(v)
        except (TypeError, ValueError):
            bad.append(v)
    if bad:
        shown = ", ".join(sorted(map(repr, bad))[:10])
        raise MigrationError(f"table {spec.name} at {path}: run_date values {shown} are not YYYY-MM-DD dates; the "
                             f"run_date string -> date migration wrote nothing (fix or remove those rows of "
                             f"version {version}, then run the job again)")
    before = df.count()
    log.warning("table %s at %s: run_date is stored as a string, declared a date: rewriting version %d "
                "(%d rows, %d run dates) with run_date as a date", spec.name, path, version, before, len(values))
    converted = df.withColumn(RUN_DATE_COLUMN, F.col(RUN_DATE_COLUMN).cast("date"))
    result = store.rewrite(converted, new, read_version=version,
                           metadata={**(metadata or {}), "genrec.migration": f"{spec.name}.run_date_to_date",
                                     "genrec.migration.rows_before": str(before)})
    after = store.read(new, result.version)[0].count()
    log.warning("table %s: run_date migration committed version %d: rows before %d, after %d (commit wrote %d)",
                spec.name, result.version, before, after, result.num_rows)
    problem = None
    if result.version != version + 1:
        problem = (f"other writers committed versions {version + 1}..{result.version - 1} between the read and "
                   f"the rewrite")
    elif after != before or result.num_rows != before:
        problem = f"the rewrite holds {after} rows (commit wrote {result.num_rows}), version {version} held {before}"
    if problem:
        restored = store.restore(new, result.version - 1)
        raise MigrationError(f"table {spec.name} at {path}: run_date migration refused: {problem}; restored the "
                             f"table to version {result.version - 1} as version {restored}, nothing is lost")
    return before


# ---------------------------------------------------------------------------------- metrics.segment
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
