"""Delta tables written from Spark, with or without the Delta Spark connector.

Without the connector (the `delta_rs` path): Spark tasks write Parquet files in
parallel into a per-transaction staging folder inside the table; the driver reads
only their footers (row counts), moves them into the table's partition folders and
commits them all in ONE Delta transaction with the `deltalake` library. A failed
Spark job, or a failed commit, leaves the table at its previous version: the files
of that attempt are never referenced by the log (and are deleted when possible).
Reads take the snapshot's file list from the log, never a directory listing.

With the connector configured (a cluster with the Delta JARs) the same calls use
`format("delta")` natively. `delta_mode=auto` picks whichever the session supports.
"""
from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import quote, unquote

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError, TableNotFoundError
from deltalake.schema import Schema as DeltaSchema
from deltalake.transaction import AddAction, CommitProperties, RemoveAction, create_table_with_add_actions

from genrec_model.schemas import TableSpec

log = logging.getLogger("genrec.delta")

STAGING_DIR = "_staging"
LOG_DIR = "_delta_log"
_HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
# Reader features the file-list read path cannot honour: refuse rather than return wrong rows.
_UNSUPPORTED_READER_FEATURES = {"deletionVectors", "columnMapping"}


class SchemaMismatchError(ValueError):
    """A DataFrame or an existing table does not match the declared table schema."""


@dataclass(frozen=True)
class WriteResult:
    table: str
    version: int
    num_files: int
    num_rows: int


@dataclass(frozen=True)
class VacuumResult:
    table: str
    deleted_files: list[str] = field(default_factory=list)   # relative to the table root
    deleted_staging: list[str] = field(default_factory=list)  # leftover _staging/<txn> folders
    bytes_freed: int = 0


class ConcurrentWriteError(RuntimeError):
    """Another writer kept committing to the same table; this write gave up after its retries."""


def spark_schema(spec: TableSpec, data_only: bool = False):
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(spec.data_schema if data_only else spec.schema, prefer_timestamp_ntz=False)


def _same_type(a, b) -> bool:
    return a.simpleString() == b.simpleString()  # ignores nullability flags inside arrays/maps


_SAFE_CASTS = {("int", "bigint"), ("smallint", "bigint"), ("smallint", "int"), ("float", "double"),
               ("int", "double"), ("bigint", "double"), ("void", "*")}


def conform(df, spec: TableSpec):
    """Select the declared columns in order, cast only where lossless; raise on anything else.

    Non-null constraints are checked inside the write tasks (see `_null_check_fn`).
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


def _null_check_fn(table: str, non_null: list[str]):
    def check(batches):
        for batch in batches:
            for name in non_null:
                if batch.column(name).null_count:
                    raise ValueError(f"table {table}: column {name} is declared non-null but has "
                                     f"{batch.column(name).null_count} null value(s)")
            yield batch
    return check


class DeltaStore:
    """Reads and writes the genrec tables under one lakehouse root."""

    def __init__(self, spark, root: str, delta_mode: str = "auto", storage_options: dict | None = None,
                 commit_retries: int = 3):
        self.spark = spark
        self.root = root.rstrip("/")
        self.storage_options = dict(storage_options or {})
        self.commit_retries = commit_retries
        self.conflicts_seen = 0  # replace commits that lost a race and were retried
        self.native = _native_delta_available(spark) if delta_mode == "auto" else delta_mode == "native"
        if delta_mode == "native" and not _native_delta_available(spark):
            raise RuntimeError("lakehouse.delta_mode=native but the Spark session has no Delta connector "
                               "(spark.sql.extensions must include io.delta.sql.DeltaSparkSessionExtension)")

    # ------------------------------------------------------------------ paths and snapshots
    def path(self, spec: TableSpec | str) -> str:
        return f"{self.root}/{spec if isinstance(spec, str) else spec.name}"

    def _table(self, spec: TableSpec, version: int | None = None) -> DeltaTable | None:
        try:
            return DeltaTable(self.path(spec), version=version, storage_options=self.storage_options or None)
        except TableNotFoundError:
            return None

    def version(self, spec: TableSpec) -> int | None:
        table = self._table(spec)
        return None if table is None else table.version()

    # ------------------------------------------------------------------ read
    def read(self, spec: TableSpec, version: int | None = None):
        """(DataFrame with the declared columns, the Delta version read). Missing table -> error."""
        table = self._table(spec, version)
        if table is None:
            raise FileNotFoundError(f"table {spec.name} does not exist at {self.path(spec)}: "
                                    f"run the stage that writes it first")
        version = table.version()
        if self.native:
            df = (self.spark.read.format("delta").option("versionAsOf", version).load(self.path(spec)))
            return df.select(*spec.columns), version
        features = set(table.protocol().reader_features or [])
        if features & _UNSUPPORTED_READER_FEATURES:
            raise RuntimeError(f"table {spec.name} uses reader features {sorted(features)}, which need the "
                               f"Delta Spark connector (set lakehouse.delta_mode=native on such a cluster)")
        files = table.file_uris()
        if not files:
            return self.spark.createDataFrame([], spark_schema(spec)), version
        df = (self.spark.read.schema(spark_schema(spec)).option("basePath", self.path(spec))
              .parquet(*files))
        return df.select(*spec.columns), version

    # ------------------------------------------------------------------ write
    def write(self, df, spec: TableSpec, *, replace_partitions: list[dict[str, str]] | None = None,
              metadata: dict[str, str] | None = None) -> WriteResult:
        """Write `df` as one atomic Delta commit, following `spec.write_mode`.

        snapshot: replace the whole table. partition: replace exactly `replace_partitions`
        (e.g. [{"run_date": "2024-01-01"}]); rows outside them are an error, and a listed
        partition with no rows ends up empty. append: add rows.
        """
        if spec.write_mode == "partition":
            if not replace_partitions:
                raise ValueError(f"table {spec.name} is written per partition: pass replace_partitions")
            for part in replace_partitions:
                if set(part) != set(spec.partition_by):
                    raise ValueError(f"table {spec.name}: replace_partitions entries need keys {spec.partition_by}")
        df = conform(df, spec)
        non_null = [f.name for f in spec.schema if not f.nullable]
        df = df.mapInArrow(_null_check_fn(spec.name, non_null), df.schema)
        meta = {"genrec.table": spec.name, **(metadata or {})}
        if self.native:
            return self._write_native(df, spec, replace_partitions, meta)
        return self._write_delta_rs(df, spec, replace_partitions, meta)

    def _write_native(self, df, spec, replace_partitions, meta) -> WriteResult:
        writer = df.write.format("delta").option("userMetadata", json.dumps(meta, sort_keys=True))
        if spec.partition_by:
            writer = writer.partitionBy(*spec.partition_by)
        if spec.write_mode == "append":
            writer = writer.mode("append")
        else:
            writer = writer.mode("overwrite")
            if spec.write_mode == "partition":
                writer = writer.option("replaceWhere", _replace_where_sql(replace_partitions))
        writer.save(self.path(spec))
        table = self._table(spec)
        add = table.get_add_actions(flatten=True).to_pydict() if table else {}
        return WriteResult(spec.name, table.version(), len(add.get("path", [])), -1)

    def _write_delta_rs(self, df, spec, replace_partitions, meta) -> WriteResult:
        table_uri = self.path(spec)
        fs, table_root = pafs.FileSystem.from_uri(table_uri)
        txn = uuid.uuid4().hex
        staging = f"{table_root}/{STAGING_DIR}/{txn}"
        moved: list[str] = []
        try:
            writer = df.write.mode("errorifexists").option("compression", "snappy")
            if spec.partition_by:
                writer = writer.partitionBy(*spec.partition_by)
            writer.parquet(f"{table_uri}/{STAGING_DIR}/{txn}")
            actions, num_rows = [], 0
            for info in fs.get_file_info(pafs.FileSelector(staging, recursive=True)):
                name = info.base_name
                if info.type != pafs.FileType.File or name.startswith(("_", ".")) or not name.endswith(".parquet"):
                    continue
                rel = info.path[len(staging) + 1:]
                parts = _partition_values(rel)
                _check_partition(spec, parts, replace_partitions)
                rows = pq.read_metadata(info.path, filesystem=fs).num_rows
                final = f"{table_root}/{rel}"
                fs.create_dir(final.rsplit("/", 1)[0], recursive=True)
                fs.move(info.path, final)
                moved.append(final)
                num_rows += rows
                actions.append(AddAction(quote(rel, safe="/="), info.size, parts, int(time.time() * 1000), True,
                                         json.dumps({"numRecords": rows})))
            version = self._commit(spec, actions, replace_partitions, meta)
        except BaseException:
            for path in moved:  # never referenced by the log: safe to drop
                _try(lambda p=path: fs.delete_file(p))
            raise
        finally:
            _try(lambda: fs.delete_dir(staging))
        log.info("delta commit table=%s version=%d files=%d rows=%d mode=%s", spec.name, version, len(actions),
                 num_rows, spec.write_mode)
        return WriteResult(spec.name, version, len(actions), num_rows)

    def _commit(self, spec: TableSpec, actions: list[AddAction], replace_partitions, meta) -> int:
        props = CommitProperties(custom_metadata=meta, max_commit_retries=self.commit_retries)
        table = self._table(spec)
        if table is None:
            try:
                create_table_with_add_actions(self.path(spec), DeltaSchema.from_arrow(spec.schema), actions,
                                              mode="error", partition_by=list(spec.partition_by) or None,
                                              name=spec.name, description=spec.description,
                                              storage_options=self.storage_options or None,
                                              commit_properties=props)
                return self._table(spec).version()
            except Exception as e:  # another writer created it first: fall through to a normal commit
                table = self._table(spec)
                if table is None:
                    raise
                log.warning("table %s was created concurrently (%s); committing on top of it", spec.name, e)
        if spec.write_mode == "append":  # appends commute: delta-rs rebases them on concurrent commits
            self._check_table_schema(spec, table)
            table.create_write_transaction(actions, "append", spec.schema, list(spec.partition_by) or None,
                                           commit_properties=props)
            return self._table(spec).version()
        return self._commit_replace(spec, table, actions, replace_partitions, meta)

    def _commit_replace(self, spec: TableSpec, table: DeltaTable, actions: list[AddAction], replace_partitions,
                        meta) -> int:
        """Commit a replace (snapshot or partitions) against exactly the snapshot its removes came from.

        delta-rs would rebase a losing commit onto the winner, keeping the winner's files next to
        ours (both writers' rows). So the commit may not be retried by delta-rs (max_commit_retries=0):
        on a conflict we reload the table, recompute the removes from the new snapshot and try
        again; the last writer to commit wins the whole partition.
        """
        props = CommitProperties(custom_metadata=meta, max_commit_retries=0)
        mode = "overwrite" if spec.write_mode == "snapshot" else "append"
        for attempt in range(self.commit_retries + 1):
            self._check_table_schema(spec, table)
            removes = _remove_actions(table, spec, replace_partitions) if spec.write_mode == "partition" else []
            read_version = table.version()
            try:
                table.create_write_transaction(actions + removes, mode, spec.schema,
                                               list(spec.partition_by) or None, commit_properties=props)
            except CommitFailedError as e:
                self.conflicts_seen += 1
                log.warning("delta commit conflict table=%s read_version=%d attempt=%d: %s", spec.name,
                            read_version, attempt + 1, e)
                table = self._table(spec)
                continue
            return read_version + 1  # no delta-rs rebase: the commit landed right after what we read
        raise ConcurrentWriteError(f"table {spec.name}: commit lost to concurrent writers "
                                   f"{self.commit_retries + 1} times; nothing was written")

    def _check_table_schema(self, spec: TableSpec, table: DeltaTable) -> None:
        def fields(schema: DeltaSchema):
            return sorted((f["name"], json.dumps(f["type"], sort_keys=True), f["nullable"])
                          for f in json.loads(schema.to_json())["fields"])
        have, want = fields(table.schema()), fields(DeltaSchema.from_arrow(spec.schema))
        if have != want:
            raise SchemaMismatchError(f"table {spec.name} at {self.path(spec)} has schema {have}, "
                                      f"code declares {want}: migrate or write elsewhere")

    def append_rows(self, spec: TableSpec, rows: pa.Table, metadata: dict[str, str] | None = None) -> int:
        """Append a few driver-side rows (run summaries); returns the new version."""
        from deltalake import write_deltalake

        rows = rows.select(spec.columns).cast(spec.schema)
        if self.native:
            df = self.spark.createDataFrame(rows.to_pandas(), spark_schema(spec))
            return self.write(df, spec, metadata=metadata).version
        write_deltalake(self.path(spec), rows, mode="append", partition_by=list(spec.partition_by) or None,
                        storage_options=self.storage_options or None,
                        commit_properties=CommitProperties(custom_metadata=metadata or {},
                                                           max_commit_retries=self.commit_retries))
        return self._table(spec).version()


    # ------------------------------------------------------------------ maintenance
    def vacuum_orphans(self, spec: TableSpec, older_than_seconds: float, dry_run: bool = False) -> VacuumResult:
        """Delete files under the table root that no log entry references, and leftover staging folders.

        A file is kept when any retained log entry (JSON commit or checkpoint; add or remove)
        names it, so time travel keeps working; `_delta_log` is never touched. Only files (and
        `_staging/<txn>` folders whose newest file is) older than `older_than_seconds` go: a
        writer moves its files into place before it commits, so those must be younger than the
        threshold (keep it well above the longest write).
        """
        if older_than_seconds < 0:
            raise ValueError("older_than_seconds must be >= 0")
        if self._table(spec) is None:
            return VacuumResult(spec.name)
        fs, root = pafs.FileSystem.from_uri(self.path(spec))
        referenced = _log_referenced_files(fs, root)
        cutoff_ns = time.time_ns() - int(older_than_seconds * 1e9)
        deleted, staged, freed = [], [], 0
        for entry in fs.get_file_info(pafs.FileSelector(root, recursive=False)):
            if entry.base_name == LOG_DIR:
                continue
            if entry.base_name == STAGING_DIR and entry.type == pafs.FileType.Directory:
                for txn in fs.get_file_info(pafs.FileSelector(entry.path, recursive=False)):
                    files = [i for i in fs.get_file_info(pafs.FileSelector(txn.path, recursive=True))
                             if i.type == pafs.FileType.File] if txn.type == pafs.FileType.Directory else [txn]
                    newest = max(i.mtime_ns or 0 for i in files) if files else (txn.mtime_ns or 0)
                    if newest < cutoff_ns:
                        staged.append(f"{STAGING_DIR}/{txn.base_name}")
                        freed += sum(i.size or 0 for i in files)
                        if not dry_run:
                            (fs.delete_dir if txn.type == pafs.FileType.Directory else fs.delete_file)(txn.path)
                continue
            if entry.base_name.startswith(("_", ".")):
                continue  # not ours (e.g. _change_data would need the connector): leave it
            files = ([i for i in fs.get_file_info(pafs.FileSelector(entry.path, recursive=True))
                      if i.type == pafs.FileType.File] if entry.type == pafs.FileType.Directory else [entry])
            for info in files:
                rel = info.path[len(root) + 1:]
                if rel in referenced or (info.mtime_ns or 0) >= cutoff_ns:
                    continue
                deleted.append(rel)
                freed += info.size or 0
                if not dry_run:
                    fs.delete_file(info.path)
        log.info("vacuum_orphans table=%s files=%d staging=%d bytes=%d dry_run=%s", spec.name, len(deleted),
                 len(staged), freed, dry_run)
        return VacuumResult(spec.name, sorted(deleted), sorted(staged), freed)


def _log_referenced_files(fs: pafs.FileSystem, root: str) -> set[str]:
    """Every data file path (decoded, relative to the root) named by an add or remove in the log."""
    paths: set[str] = set()
    for info in fs.get_file_info(pafs.FileSelector(f"{root}/{LOG_DIR}", recursive=False)):
        name = info.base_name
        if name.endswith(".json") and name[:-5].isdigit():
            with fs.open_input_stream(info.path) as f:
                for line in f.read().decode("utf-8").splitlines():
                    if not line.strip():
                        continue
                    action = json.loads(line)
                    for kind in ("add", "remove", "cdc"):
                        if kind in action:
                            paths.add(unquote(action[kind]["path"]))
        elif ".checkpoint" in name and name.endswith(".parquet"):
            ckpt = pq.read_table(info.path, filesystem=fs)
            for kind in ("add", "remove"):
                if kind in ckpt.column_names:
                    paths.update(unquote(p["path"]) for p in ckpt.column(kind).to_pylist() if p)
    return paths

def _remove_actions(table: DeltaTable, spec: TableSpec, partitions: list[dict[str, str]]) -> list[RemoveAction]:
    files = pa.table(table.get_add_actions(flatten=True))
    if files.num_rows == 0:
        return []
    wanted = {tuple(str(p[k]) for k in spec.partition_by) for p in partitions}
    cols = [files.column(f"partition.{k}").to_pylist() for k in spec.partition_by]
    now = int(time.time() * 1000)
    out = []
    for i, (path, size) in enumerate(zip(files.column("path").to_pylist(), files.column("size_bytes").to_pylist())):
        values = tuple(str(c[i]) if c[i] is not None else None for c in cols)
        if values in wanted:
            out.append(RemoveAction(path, True, now, size, dict(zip(spec.partition_by, values))))
    return out


def _native_delta_available(spark) -> bool:
    extensions = spark.conf.get("spark.sql.extensions", "") or ""
    if "io.delta.sql.DeltaSparkSessionExtension" not in extensions:
        return False
    try:
        spark._jvm.java.lang.Class.forName("io.delta.sql.DeltaSparkSessionExtension")
        return True
    except Exception:
        return False


def _partition_values(rel_path: str) -> dict[str, str | None]:
    values = {}
    for segment in rel_path.split("/")[:-1]:
        key, _, value = segment.partition("=")
        value = unquote(value)
        values[unquote(key)] = None if value == _HIVE_NULL else value
    return values


def _check_partition(spec: TableSpec, parts: dict, replace_partitions) -> None:
    if spec.write_mode == "partition" and parts not in replace_partitions:
        raise ValueError(f"table {spec.name}: rows for partition {parts} outside the partitions being "
                         f"replaced {replace_partitions}")


def _replace_where_sql(partitions: list[dict[str, str]]) -> str:
    def lit(v):
        return "'" + str(v).replace("'", "''") + "'"
    return " OR ".join("(" + " AND ".join(f"`{k}` = {lit(v)}" for k, v in p.items()) + ")" for p in partitions)


def _try(fn) -> None:
    try:
        fn()
    except Exception as e:  # cleanup must not hide the original error
        log.debug("cleanup failed: %s", e)
