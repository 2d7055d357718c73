"""Delta tables written from Spark: one interface, two backends.

`DeltaStore(spark, root, delta_mode)` returns the backend for the session:

- `NativeDeltaStore` (udfs/delta_native.py): the Delta Lake Spark connector, `format("delta")`,
  `replaceWhere` for partition replaces, `OPTIMIZE ... ZORDER BY`, `VACUUM`. What clusters run.
- `DeltaRsStore` (udfs/delta_rs.py): Spark tasks write Parquet into a per-transaction staging folder,
  the driver reads their footers and commits them in ONE Delta transaction with `deltalake`
  (delta-rs). For sessions without the connector.

`delta_mode=auto` picks native when the session has the connector loaded, else delta-rs. Both
backends give the same tables: same schema (every column nullable in the Delta schema, as Spark
creates tables; the declared non-null columns are checked by every write), partitioning, table
properties (change data feed on `recommendations`), rows, versions, and write results counted
from this commit alone. A failed write leaves the table at its previous version.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

if TYPE_CHECKING:  # pragma: no cover
    from genrec_model.data.schemas import TableSpec

log = logging.getLogger("genrec.delta")

BACKENDS = ("native", "delta_rs")
# Table properties set when a table is created (both backends), by table name. A TableSpec with a
# `properties` mapping overrides this. recommendations: nearline caches follow its change data feed.
DEFAULT_TABLE_PROPERTIES: dict[str, dict[str, str]] = {
    "recommendations": {"delta.enableChangeDataFeed": "true"},
}


class SchemaMismatchError(ValueError):
    """A DataFrame or an existing table does not match the declared table schema."""


class ConcurrentWriteError(RuntimeError):
    """Another writer kept committing to the same table; this write gave up after its retries."""


@dataclass(frozen=True)
class WriteResult:
    table: str
    version: int       # the version this write committed
    num_files: int     # data files added by this commit
    num_rows: int      # rows written by this commit


@dataclass(frozen=True)
class OptimizeResult:
    table: str
    version: int | None          # the OPTIMIZE commit, None when there was nothing to rewrite
    files_removed: int
    files_added: int
    zorder_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class VacuumResult:
    table: str
    files_deleted: int
    retention_hours: float
    dry_run: bool = False


def spark_schema(spec: "TableSpec", data_only: bool = False):
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(spec.data_schema if data_only else spec.schema, prefer_timestamp_ntz=False)


def nullable_arrow_schema(schema: pa.Schema) -> pa.Schema:
    """`schema` with every field (nested ones too) nullable: the Delta schema both backends create.

    Spark's Delta writer creates tables with nullable columns whatever the DataFrame says; delta-rs
    would keep the flags. Creating both the same way keeps the mode invisible to readers; the store
    checks the declared non-null columns on every write instead.
    """
    def typ(t: pa.DataType) -> pa.DataType:
        if pa.types.is_struct(t):
            return pa.struct([pa.field(f.name, typ(f.type), True) for f in t])
        if pa.types.is_large_list(t):
            return pa.large_list(pa.field(t.value_field.name, typ(t.value_type), True))
        if pa.types.is_list(t):
            return pa.list_(pa.field(t.value_field.name, typ(t.value_type), True))
        if pa.types.is_map(t):
            return pa.map_(typ(t.key_type), pa.field(t.item_field.name, typ(t.item_type), True))
        return t
    return pa.schema([pa.field(f.name, typ(f.type), True) for f in schema])


def table_properties(spec: "TableSpec", extra: dict[str, dict[str, str]] | None = None) -> dict[str, str]:
    props = dict(DEFAULT_TABLE_PROPERTIES.get(spec.name, {}))
    props.update((extra or {}).get(spec.name, {}))
    props.update(getattr(spec, "properties", None) or {})
    return props


def _same_type(a, b) -> bool:
    return a.simpleString() == b.simpleString()  # ignores nullability flags inside arrays/maps


_SAFE_CASTS = {("int", "bigint"), ("smallint", "bigint"), ("smallint", "int"), ("float", "double"),
               ("int", "double"), ("bigint", "double"), ("void", "*")}


def conform(df, spec: "TableSpec"):
    """Select the declared columns in order, cast only where lossless; raise on anything else.

    Non-null constraints are checked inside the write tasks (see `_row_check_fn`).
    """
    from pyspark.sql import functions as F

    target = spark_schema(spec)
    have = {f.name: f.dataType for f in df.schema}
    missing = [c for c in spec.columns if c not in have]
    extra = [c for c in have if c not in spec.columns]
    if missing or extra:
        raise SchemaMismatchError(f"table {spec.name}: missing columns {missing}, unexpected columns {extra}")
    cols = []
    for field in target:
        src = have[field.name]
        if _same_type(src, field.dataType):
            cols.append(F.col(field.name))
        elif (src.simpleString(), field.dataType.simpleString()) in _SAFE_CASTS or src.simpleString() == "void":
            cols.append(F.col(field.name).cast(field.dataType).alias(field.name))
        else:
            raise SchemaMismatchError(f"table {spec.name}: column {field.name} is {src.simpleString()}, "
                                      f"declared {field.dataType.simpleString()}")
    return df.select(*cols)


def _row_check_fn(table: str, non_null: list[str], partition_by: tuple[str, ...] = (),
                  allowed: list[dict[str, str]] | None = None):
    """Per-batch checks inside the write tasks: declared non-null columns hold no nulls, and (partition
    replaces) every row belongs to one of the partitions being replaced. Both backends run it."""
    wanted = None if allowed is None else {tuple(str(p[k]) for k in partition_by) for p in allowed}

    def check(batches):
        for batch in batches:
            for name in non_null:
                if batch.column(name).null_count:
                    raise ValueError(f"table {table}: column {name} is declared non-null but has "
                                     f"{batch.column(name).null_count} null value(s)")
            if wanted is not None and batch.num_rows:
                cols = [batch.column(k).to_pylist() for k in partition_by]
                for values in set(zip(*cols)):
                    key = tuple(None if v is None else str(v) for v in values)
                    if key not in wanted:
                        raise ValueError(f"table {table}: rows for partition {dict(zip(partition_by, key))} "
                                         f"outside the partitions being replaced {allowed}")
            yield batch
    return check


def check_table_schema(spec: "TableSpec", path: str, have: list[tuple[str, str]], want: list[tuple[str, str]]) -> None:
    """Raise unless the table's (column, type) list is the declared one. Nullability is not compared:
    tables are created all-nullable, and older delta-rs tables carry the declared flags."""
    if sorted(have) != sorted(want):
        raise SchemaMismatchError(f"table {spec.name} at {path} has schema {sorted(have)}, code declares "
                                  f"{sorted(want)}: migrate or write elsewhere")


def partition_value(spec: TableSpec, column: str, value) -> str:
    """A partition value as Delta writes it in `partitionValues` (and in the folder name): the text both
    backends compare. Date columns take a `datetime.date` or strict 'YYYY-MM-DD' text."""
    if value is None:
        raise ValueError(f"table {spec.name}: partition column {column} cannot be replaced with a null value")
    if pa.types.is_date(spec.schema.field(column).type):
        from genrec_model.data.schemas import run_date_value

        return run_date_value(value).isoformat()  # the strict date parser (run_date is the only date column)
    return str(value)


def normalize_partitions(spec: TableSpec, partitions: list[dict] | None) -> list[dict[str, str]] | None:
    """`replace_partitions` / `partitions` with every value as its Delta partition-value text."""
    if partitions is None:
        return None
    return [{k: partition_value(spec, k, v) for k, v in p.items()} for p in partitions]


def replace_where_sql(partitions: list[dict[str, str]], spec: TableSpec | None = None) -> str:
    """The SQL predicate selecting `partitions` (the connector's replaceWhere, OPTIMIZE ... WHERE): typed
    literals, `DATE'2024-01-01'` for date columns of `spec`, quoted strings otherwise."""
    def lit(k, v):
        if spec is not None and k in spec.schema.names and pa.types.is_date(spec.schema.field(k).type):
            return f"DATE'{partition_value(spec, k, v)}'"
        return "'" + str(v).replace("'", "''") + "'"
    return " OR ".join("(" + " AND ".join(f"`{k}` = {lit(k, v)}" for k, v in p.items()) + ")" for p in partitions)


def resolve_backend(spark, delta_mode: str) -> str:
    from udfs.session import delta_connector_loaded

    if delta_mode not in ("auto", *BACKENDS):
        raise ValueError(f"lakehouse.delta_mode must be auto, native or delta_rs, not {delta_mode!r}")
    loaded = delta_connector_loaded(spark)
    if delta_mode == "native" and not loaded:
        raise RuntimeError("lakehouse.delta_mode=native but the Spark session has no Delta connector: run "
                           "scripts/setup_env.sh (fetches it into .jars; GENREC_DELTA_JARS points elsewhere) "
                           "or submit with the delta-spark JARs and spark.sql.extensions="
                           "io.delta.sql.DeltaSparkSessionExtension")
    if delta_mode == "auto":
        return "native" if loaded else "delta_rs"
    return delta_mode


class DeltaStore:
    """Reads and writes the genrec tables under one lakehouse root (the interface of both backends).

    `DeltaStore(spark, root, delta_mode)` constructs the backend `delta_mode` selects.
    """

    backend = "abstract"

    def __new__(cls, spark=None, root: str = "", delta_mode: str = "auto", *args, **kwargs):
        if cls is DeltaStore:
            if resolve_backend(spark, delta_mode) == "native":
                from udfs.delta_native import NativeDeltaStore as cls
            else:
                from udfs.delta_rs import DeltaRsStore as cls
        return super().__new__(cls)

    def __init__(self, spark, root: str, delta_mode: str = "auto", storage_options: dict | None = None,
                 commit_retries: int = 3, table_properties: dict[str, dict[str, str]] | None = None):
        if delta_mode not in ("auto", self.backend):
            resolve_backend(spark, delta_mode)  # raises on an unknown or unavailable mode
            raise ValueError(f"{type(self).__name__} cannot serve lakehouse.delta_mode={delta_mode}")
        self.spark = spark
        self.root = root.rstrip("/")
        self.storage_options = dict(storage_options or {})
        self.commit_retries = commit_retries
        self.extra_properties = dict(table_properties or {})
        self.conflicts_seen = 0  # replace commits that lost a race and were retried

    @property
    def native(self) -> bool:
        return self.backend == "native"

    def path(self, spec: "TableSpec | str") -> str:
        return f"{self.root}/{spec if isinstance(spec, str) else spec.name}"

    def properties(self, spec: "TableSpec") -> dict[str, str]:
        """Table properties a new table gets (e.g. delta.enableChangeDataFeed for recommendations)."""
        return table_properties(spec, self.extra_properties)

    # ------------------------------------------------------------------ the interface
    def version(self, spec: "TableSpec") -> int | None:
        """The table's latest version, None when it does not exist."""
        raise NotImplementedError

    def read(self, spec: "TableSpec", version: int | None = None):
        """(DataFrame with the declared columns, the Delta version read). Missing table -> error."""
        raise NotImplementedError

    def write(self, df, spec: "TableSpec", *, replace_partitions: list[dict[str, str]] | None = None,
              metadata: dict[str, str] | None = None) -> WriteResult:
        """Write `df` as one atomic Delta commit, following `spec.write_mode`.

        snapshot: replace the whole table. partition: replace exactly `replace_partitions`
        (e.g. [{"run_date": "2024-01-01"}]); rows outside them are an error, and a listed
        partition with no rows ends up empty. append: add rows. Partition values of date columns
        (run_date) may be given as dates or 'YYYY-MM-DD' text.
        """
        if spec.write_mode == "partition":
            if not replace_partitions:
                raise ValueError(f"table {spec.name} is written per partition: pass replace_partitions")
            for part in replace_partitions:
                if set(part) != set(spec.partition_by):
                    raise ValueError(f"table {spec.name}: replace_partitions entries need keys {spec.partition_by}")
            replace_partitions = normalize_partitions(spec, replace_partitions)
        df = conform(df, spec)
        non_null = [f.name for f in spec.schema if not f.nullable]
        allowed = replace_partitions if spec.write_mode == "partition" else None
        df = df.mapInArrow(_row_check_fn(spec.name, non_null, tuple(spec.partition_by), allowed), df.schema)
        meta = {"genrec.table": spec.name, **(metadata or {})}
        result = self._write(df, spec, replace_partitions, meta)
        log.info("delta commit table=%s backend=%s version=%d files=%d rows=%d mode=%s", spec.name, self.backend,
                 result.version, result.num_files, result.num_rows, spec.write_mode)
        return result

    def _write(self, df, spec, replace_partitions, meta) -> WriteResult:
        raise NotImplementedError

    def rewrite(self, df, spec: TableSpec, *, read_version: int, metadata: dict[str, str] | None = None) -> WriteResult:
        """Replace the whole table, rows AND schema, with `df` (conformed to `spec`) in one commit: the
        schema migration primitive (the connector's `overwriteSchema`, delta-rs's overwrite with a new
        schema). Table properties, partition columns and history are kept. `read_version` is the version
        `df` was read from: delta-rs commits only right on top of it (ConcurrentWriteError otherwise);
        on the connector the caller compares `WriteResult.version` with `read_version + 1`.
        """
        df = conform(df, spec)
        non_null = [f.name for f in spec.schema if not f.nullable]
        df = df.mapInArrow(_row_check_fn(spec.name, non_null), df.schema)
        meta = {"genrec.table": spec.name, **(metadata or {})}
        result = self._rewrite(df, spec, read_version, meta)
        log.info("delta commit table=%s backend=%s version=%d files=%d rows=%d mode=rewrite", spec.name,
                 self.backend, result.version, result.num_files, result.num_rows)
        return result

    def _rewrite(self, df, spec, read_version: int, meta) -> WriteResult:
        raise NotImplementedError

    def restore(self, spec: TableSpec, version: int) -> int:
        """Commit the table's state (rows and schema) as of `version` as a new version; returns it."""
        raise NotImplementedError

    def append_rows(self, spec: "TableSpec", rows: pa.Table, metadata: dict[str, str] | None = None) -> int:
        """Append a few driver-side rows (run summaries); returns the new version."""
        raise NotImplementedError

    def optimize(self, spec: "TableSpec", zorder_by: list[str] | tuple[str, ...] = (),
                 partitions: list[dict[str, str]] | None = None, target_file_bytes: int | None = None,
                 row_group_bytes: int | None = None) -> OptimizeResult:
        """Compact (and with `zorder_by`, cluster) the files of `partitions` (all when None), so a reader
        looking up a few `zorder_by` values opens few files, and inside them (Parquet row groups of about
        `row_group_bytes`, with min/max statistics) reads few bytes. The rows readers see do not change
        (OPTIMIZE commits carry dataChange=false)."""
        raise NotImplementedError

    def vacuum(self, spec: "TableSpec", retention_hours: float, dry_run: bool = False) -> VacuumResult:
        """Delete data files no version younger than `retention_hours` needs (replaced, optimized away, or
        left by failed writes). Time travel to older versions stops working; the log is untouched."""
        raise NotImplementedError

    def commit_info(self, spec: "TableSpec", version: int) -> dict:
        """The commitInfo of one version, from the Delta log (engineInfo, operation, metrics...)."""
        import pyarrow.fs as pafs

        fs, root = pafs.FileSystem.from_uri(self.path(spec))
        with fs.open_input_stream(f"{root}/_delta_log/{version:020d}.json") as f:
            for line in f.read().decode("utf-8").splitlines():
                if line.strip() and "commitInfo" in (action := json.loads(line)):
                    return action["commitInfo"]
        return {}

    @staticmethod
    def _metadata_json(meta: dict[str, str]) -> str:
        return json.dumps(meta, sort_keys=True)
