"""The delta-rs backend of DeltaStore: Spark writes Parquet, delta-rs commits it.

Spark tasks write Parquet files in parallel into a per-transaction staging folder inside the table;
the driver reads only their footers (row counts and column statistics), moves them into the table's
partition folders and commits them all in ONE Delta transaction with `deltalake`. A failed Spark job,
or a failed commit, leaves the table at its previous version: the files of that attempt are never
referenced by the log (and are deleted when possible). Reads take the snapshot's file list from the
log, never a directory listing.
"""
from __future__ import annotations

import json
import logging
import math
import time
import uuid
from urllib.parse import quote, unquote

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError
from deltalake.schema import Schema as DeltaSchema
from deltalake.transaction import AddAction, CommitProperties, RemoveAction, create_table_with_add_actions

from udfs.delta_store import (ConcurrentWriteError, DeltaStore, OptimizeResult, VacuumResult, WriteResult,
                              check_table_schema, normalize_partitions, nullable_arrow_schema, spark_schema)

log = logging.getLogger("genrec.delta")

STAGING_DIR = "_staging"
_HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
# Reader features the file-list read path cannot honour: refuse rather than return wrong rows.
_UNSUPPORTED_READER_FEATURES = {"deletionVectors", "columnMapping"}
_MAX_STAT_STRING = 64  # longer string min/max values are left out of the file statistics


class DeltaRsStore(DeltaStore):
    backend = "delta_rs"

    # ------------------------------------------------------------------ snapshots
    def _table(self, spec, version: int | None = None) -> DeltaTable | None:
        try:
            return DeltaTable(self.path(spec), version=version, storage_options=self.storage_options or None)
        except TableNotFoundError:
            return None

    def version(self, spec) -> int | None:
        table = self._table(spec)
        return None if table is None else table.version()

    # ------------------------------------------------------------------ read
    def read(self, spec, version: int | None = None):
        table = self._table(spec, version)
        if table is None:
            raise FileNotFoundError(f"table {spec.name} does not exist at {self.path(spec)}: "
                                    f"run the stage that writes it first")
        version = table.version()
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
    def _write(self, df, spec, replace_partitions, meta) -> WriteResult:
        return self._staged(df, spec, replace_partitions,
                            lambda actions: self._commit(spec, actions, replace_partitions, meta))

    def _staged(self, df, spec, replace_partitions, commit) -> WriteResult:
        """Spark writes `df` into a staging folder; its files move into the table and `commit(actions)`
        commits them (returns the version). On any failure the moved files are deleted again."""
        table_uri = self.path(spec)
        fs, table_root = pafs.FileSystem.from_uri(table_uri)
        txn = uuid.uuid4().hex
        staging = f"{table_root}/{STAGING_DIR}/{txn}"
        moved: list[str] = []
        data_schema = spec.data_schema
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
                footer = pq.read_metadata(info.path, filesystem=fs)
                final = f"{table_root}/{rel}"
                fs.create_dir(final.rsplit("/", 1)[0], recursive=True)
                fs.move(info.path, final)
                moved.append(final)
                num_rows += footer.num_rows
                actions.append(AddAction(quote(rel, safe="/="), info.size, parts, int(time.time() * 1000), True,
                                         json.dumps(_file_stats(footer, data_schema))))
            version = commit(actions)
        except BaseException:
            for path in moved:  # never referenced by the log: safe to drop
                _try(lambda p=path: fs.delete_file(p))
            raise
        finally:
            _try(lambda: fs.delete_dir(staging))
        return WriteResult(spec.name, version, len(actions), num_rows)

    def _rewrite(self, df, spec, read_version: int, meta) -> WriteResult:
        """An overwrite commit carrying the new schema (delta-rs keeps the table's id, name, description,
        properties and partition columns), committed only as `read_version + 1`: no retry, no rebase."""
        table = self._table(spec, read_version)
        if table is None:
            raise FileNotFoundError(f"table {spec.name} does not exist at {self.path(spec)}: nothing to rewrite")

        def commit(actions):
            try:
                table.create_write_transaction(
                    actions, "overwrite", nullable_arrow_schema(spec.schema), list(spec.partition_by) or None,
                    commit_properties=CommitProperties(custom_metadata=meta, max_commit_retries=0))
            except CommitFailedError as e:
                raise ConcurrentWriteError(f"table {spec.name}: version {read_version + 1} was committed by another "
                                           f"writer; the rewrite of version {read_version} wrote nothing") from e
            return read_version + 1
        return self._staged(df, spec, None, commit)

    def restore(self, spec, version: int) -> int:
        self._table(spec).restore(version, commit_properties=CommitProperties(
            custom_metadata={"genrec.table": spec.name}, max_commit_retries=0))
        return self._table(spec).version()

    def _commit(self, spec, actions: list[AddAction], replace_partitions, meta) -> int:
        props = CommitProperties(custom_metadata=meta, max_commit_retries=self.commit_retries)
        table = self._table(spec)
        if table is None:
            try:
                create_table_with_add_actions(self.path(spec), DeltaSchema.from_arrow(nullable_arrow_schema(spec.schema)),
                                              actions, mode="error", partition_by=list(spec.partition_by) or None,
                                              name=spec.name, description=spec.description,
                                              configuration=self.properties(spec) or None,
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
            table.create_write_transaction(actions, "append", table.schema(), list(spec.partition_by) or None,
                                           commit_properties=props)
            return self._table(spec).version()
        return self._commit_replace(spec, table, actions, replace_partitions, meta)

    def _commit_replace(self, spec, table: DeltaTable, actions: list[AddAction], replace_partitions, meta) -> int:
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
                table.create_write_transaction(actions + removes, mode, table.schema(),
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

    def _check_table_schema(self, spec, table: DeltaTable) -> None:
        check_table_schema(spec, self.path(spec), _delta_types(table.schema()),
                           _delta_types(DeltaSchema.from_arrow(spec.schema)))

    def append_rows(self, spec, rows: pa.Table, metadata: dict[str, str] | None = None) -> int:
        rows = rows.select(spec.columns).cast(spec.schema)  # declared types and non-null columns checked here
        table = self._table(spec)
        if table is not None:
            self._check_table_schema(spec, table)
        write_deltalake(self.path(spec), rows.cast(nullable_arrow_schema(spec.schema)), mode="append",
                        partition_by=list(spec.partition_by) or None, name=spec.name if table is None else None,
                        description=spec.description if table is None else None,
                        configuration=(self.properties(spec) or None) if table is None else None,
                        storage_options=self.storage_options or None,
                        commit_properties=CommitProperties(custom_metadata=metadata or {},
                                                           max_commit_retries=self.commit_retries))
        return self._table(spec).version()

    # ------------------------------------------------------------------ layout and retention
    def optimize(self, spec, zorder_by=(), partitions=None, target_file_bytes=None,
                 row_group_bytes=None) -> OptimizeResult:
        """delta-rs `optimize.z_order` (or `compact` without columns), one commit per listed partition;
        row groups sized in rows from the partition's bytes per row."""
        from deltalake import WriterProperties

        table = self._table(spec)
        if table is None:
            raise FileNotFoundError(f"table {spec.name} does not exist at {self.path(spec)}")
        filters = ([[(k, "=", v) for k, v in p.items()] for p in normalize_partitions(spec, partitions)]
                   if partitions else [None])
        removed = added = 0
        version = None
        for flt in filters:
            table = self._table(spec)
            props = None
            if row_group_bytes:
                files = pa.table(table.get_add_actions(flatten=True)).to_pandas()
                for k, op, v in flt or []:
                    files = files[files[f"partition.{k}"].astype(str) == v]
                if len(files) and files["num_records"].sum():
                    per_row = files["size_bytes"].sum() / files["num_records"].sum()
                    props = WriterProperties(max_row_group_size=max(1024, int(row_group_bytes / per_row)))
            kwargs = dict(partition_filters=flt, target_size=target_file_bytes, writer_properties=props,
                          commit_properties=CommitProperties(custom_metadata={"genrec.table": spec.name},
                                                             max_commit_retries=self.commit_retries))
            metrics = (table.optimize.z_order(list(zorder_by), **kwargs) if zorder_by
                       else table.optimize.compact(**kwargs))
            removed += int(metrics.get("numFilesRemoved", 0))
            added += int(metrics.get("numFilesAdded", 0))
            if metrics.get("numFilesAdded", 0) or metrics.get("numFilesRemoved", 0):
                version = self._table(spec).version()
        log.info("delta optimize table=%s backend=delta_rs zorder=%s version=%s removed=%d added=%d", spec.name,
                 list(zorder_by), version, removed, added)
        return OptimizeResult(spec.name, version, removed, added, tuple(zorder_by))

    def vacuum(self, spec, retention_hours: float, dry_run: bool = False) -> VacuumResult:
        """delta-rs full vacuum (every unreferenced data file older than the retention, as Spark's
        VACUUM), plus staging folders of failed writes older than the retention."""
        if retention_hours < 0:
            raise ValueError("retention_hours must be >= 0")
        table = self._table(spec)
        if table is None:
            return VacuumResult(spec.name, 0, retention_hours, dry_run)
        hours = int(math.ceil(retention_hours))
        # A dry run first, as on the connector: a vacuum with nothing to delete leaves no VACUUM
        # START/END commits (delta-rs lists tombstones whose files are already gone: skip those).
        fs, root = pafs.FileSystem.from_uri(self.path(spec))

        def local(p: str) -> str:  # delta-rs lists paths relative to the table, or absolute
            if "://" in p:
                return pafs.FileSystem.from_uri(p)[1]
            return p if p.startswith("/") else f"{root}/{unquote(p)}"

        listed = table.vacuum(retention_hours=hours, dry_run=True, enforce_retention_duration=False, full=True)
        present = [p for p in listed if fs.get_file_info(local(p)).type == pafs.FileType.File]
        if present and not dry_run:
            table.vacuum(retention_hours=hours, dry_run=False, enforce_retention_duration=False, full=True)
        staged = self._clean_staging(spec, retention_hours, dry_run)
        log.info("delta vacuum table=%s backend=delta_rs retention_h=%s files=%d staging=%d dry_run=%s",
                 spec.name, retention_hours, len(present), staged, dry_run)
        return VacuumResult(spec.name, len(present) + staged, retention_hours, dry_run)

    def _clean_staging(self, spec, retention_hours: float, dry_run: bool) -> int:
        fs, root = pafs.FileSystem.from_uri(self.path(spec))
        staging = f"{root}/{STAGING_DIR}"
        if fs.get_file_info(staging).type != pafs.FileType.Directory:
            return 0
        cutoff_ns = time.time_ns() - int(retention_hours * 3600e9)
        count = 0
        for txn in fs.get_file_info(pafs.FileSelector(staging, recursive=False)):
            files = ([i for i in fs.get_file_info(pafs.FileSelector(txn.path, recursive=True))
                      if i.type == pafs.FileType.File] if txn.type == pafs.FileType.Directory else [txn])
            if max((i.mtime_ns or 0 for i in files), default=txn.mtime_ns or 0) < cutoff_ns:
                count += len(files)
                if not dry_run:
                    (fs.delete_dir if txn.type == pafs.FileType.Directory else fs.delete_file)(txn.path)
        return count


def _delta_types(schema: DeltaSchema) -> list[tuple[str, str]]:
    """(column, Delta type JSON without nullability flags) for every top-level column."""
    def strip(t):
        if isinstance(t, dict):
            return {k: strip(v) for k, v in t.items() if k not in ("nullable", "containsNull",
                                                                   "valueContainsNull", "metadata")}
        if isinstance(t, list):
            return [strip(v) for v in t]
        return t
    return [(f["name"], json.dumps(strip(f["type"]), sort_keys=True)) for f in json.loads(schema.to_json())["fields"]]


def _file_stats(footer: pq.FileMetaData, data_schema: pa.Schema) -> dict:
    """Delta file statistics from a Parquet footer: numRecords, and min/max/nullCount of the top-level
    primitive columns where every row group has them (readers skip files with them)."""
    stats: dict = {"numRecords": footer.num_rows}
    mins, maxs, nulls = {}, {}, {}
    by_path = {footer.schema.column(i).path: i for i in range(footer.num_columns)}
    for field in data_schema:
        t = field.type
        if not (pa.types.is_string(t) or pa.types.is_integer(t) or pa.types.is_floating(t)
                or pa.types.is_boolean(t)) or field.name not in by_path:
            continue
        col = by_path[field.name]
        chunks = [footer.row_group(r).column(col).statistics for r in range(footer.num_row_groups)]
        if not chunks or any(c is None for c in chunks):
            continue
        if all(c.has_null_count for c in chunks):
            nulls[field.name] = int(sum(c.null_count for c in chunks))
        with_values = [c for c in chunks if c.has_min_max]
        if len(with_values) != len([c for c in chunks if c.num_values > 0]) or not with_values:
            continue
        lo, hi = min(c.min for c in with_values), max(c.max for c in with_values)
        if isinstance(lo, bytes) or isinstance(hi, bytes):
            continue
        if isinstance(lo, float) and (math.isnan(lo) or math.isnan(hi)):
            continue
        if isinstance(lo, str) and max(len(lo), len(hi)) > _MAX_STAT_STRING:
            continue
        mins[field.name], maxs[field.name] = lo, hi
    if mins:
        stats["minValues"], stats["maxValues"] = mins, maxs
    if nulls:
        stats["nullCount"] = nulls
    return stats


def _remove_actions(table: DeltaTable, spec, partitions: list[dict[str, str]]) -> list[RemoveAction]:
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


def _partition_values(rel_path: str) -> dict[str, str | None]:
    values = {}
    for segment in rel_path.split("/")[:-1]:
        key, _, value = segment.partition("=")
        value = unquote(value)
        values[unquote(key)] = None if value == _HIVE_NULL else value
    return values


def _check_partition(spec, parts: dict, replace_partitions) -> None:
    if spec.write_mode == "partition" and replace_partitions is not None and parts not in replace_partitions:
        raise ValueError(f"table {spec.name}: rows for partition {parts} outside the partitions being "
                         f"replaced {replace_partitions}")


def _try(fn) -> None:
    try:
        fn()
    except Exception as e:  # cleanup must not hide the original error
        log.debug("cleanup failed: %s", e)
