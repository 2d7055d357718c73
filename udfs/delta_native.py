"""The native backend of DeltaStore: the Delta Lake Spark connector (what Databricks, EMR and
spark-submit --packages clusters run).

Writes are `format("delta")` saves, partition replaces use `replaceWhere`, the layout is kept with
`OPTIMIZE ... ZORDER BY` and retention with `VACUUM`. Everything goes through the Spark session, so
the driver needs no direct access to the storage. Each write tags its commit with a transaction id in
`userMetadata` and reports the version, rows and files of that commit from its operation metrics in
the Delta log (DESCRIBE HISTORY), not from the table as a whole.
"""
from __future__ import annotations

import json
import logging
import uuid
from contextlib import contextmanager

import pyarrow as pa

from udfs.delta_store import (ConcurrentWriteError, DeltaStore, OptimizeResult, VacuumResult, WriteResult,
                              check_table_schema, normalize_partitions, replace_where_sql, spark_schema)

log = logging.getLogger("genrec.delta")

# What the connector raises when a concurrent commit invalidated this transaction's read snapshot.
# These are safe to retry: nothing of the losing attempt is in the log.
_CONFLICTS = ("ConcurrentAppendException", "ConcurrentDeleteReadException", "ConcurrentDeleteDeleteException",
              "ConcurrentTransactionException", "MetadataChangedException", "ProtocolChangedException",
              "DELTA_CONCURRENT_APPEND", "DELTA_CONCURRENT_DELETE_READ", "DELTA_CONCURRENT_DELETE_DELETE",
              "DELTA_CONCURRENT_TRANSACTION", "DELTA_METADATA_CHANGED", "DELTA_PROTOCOL_CHANGED")
_HISTORY_WINDOW = 100  # commits searched for this write's transaction id


def _is_conflict(e: BaseException) -> bool:
    text = f"{type(e).__name__}: {e}"
    return any(marker in text for marker in _CONFLICTS)


class NativeDeltaStore(DeltaStore):
    backend = "native"

    def _delta_table(self, spec):
        from delta.tables import DeltaTable

        path = self.path(spec)
        return DeltaTable.forPath(self.spark, path) if DeltaTable.isDeltaTable(self.spark, path) else None

    def version(self, spec) -> int | None:
        table = self._delta_table(spec)
        return None if table is None else int(table.history(1).select("version").first()[0])

    # ------------------------------------------------------------------ read
    def read(self, spec, version: int | None = None):
        if version is None:
            version = self.version(spec)
            if version is None:
                raise FileNotFoundError(f"table {spec.name} does not exist at {self.path(spec)}: "
                                        f"run the stage that writes it first")
        df = self.spark.read.format("delta").option("versionAsOf", version).load(self.path(spec))
        return df.select(*spec.columns), version

    # ------------------------------------------------------------------ write
    def _check_table_schema(self, spec) -> None:
        have = self.spark.read.format("delta").load(self.path(spec)).schema
        check_table_schema(spec, self.path(spec), [(f.name, f.dataType.simpleString()) for f in have],
                           [(f.name, f.dataType.simpleString()) for f in spark_schema(spec)])

    def _write(self, df, spec, replace_partitions, meta) -> WriteResult:
        # The connector skips the commit of a write that adds and removes no file (an empty day written again);
        # every write here must be its own tagged commit, so the job can report it (0 rows) and find it.
        self.spark.conf.set("spark.databricks.delta.skipRecordingEmptyCommits", "false")
        txn = uuid.uuid4().hex
        user_metadata = self._metadata_json({**meta, "genrec.txn": txn})
        for attempt in range(self.commit_retries + 1):
            exists = self._delta_table(spec) is not None
            if exists:
                self._check_table_schema(spec)
            writer = df.write.format("delta").option("userMetadata", user_metadata)
            if spec.partition_by:
                writer = writer.partitionBy(*spec.partition_by)
            if not exists:  # table properties are set by the commit that creates the table
                for key, value in self.properties(spec).items():
                    writer = writer.option(key, value)
            if spec.write_mode == "append":
                writer = writer.mode("append")
            else:
                writer = writer.mode("overwrite")
                if spec.write_mode == "partition":
                    writer = writer.option("replaceWhere", replace_where_sql(replace_partitions, spec))
            try:
                writer.save(self.path(spec))
                break
            except Exception as e:
                if not _is_conflict(e):
                    raise
                self.conflicts_seen += 1
                log.warning("delta commit conflict table=%s backend=native attempt=%d: %s", spec.name, attempt + 1,
                            str(e).splitlines()[0][:300])
        else:
            raise ConcurrentWriteError(f"table {spec.name}: commit lost to concurrent writers "
                                       f"{self.commit_retries + 1} times; nothing was written")
        return self._result(spec, txn)

    def _rewrite(self, df, spec, read_version: int, meta) -> WriteResult:
        """`mode("overwrite")` with `overwriteSchema`: new rows, schema and partitioning in one commit; the
        table's properties stay. Never retried: `df` was read from `read_version`, so a retry on a newer
        snapshot would drop what was committed in between (the caller checks the committed version)."""
        if self._delta_table(spec) is None:
            raise FileNotFoundError(f"table {spec.name} does not exist at {self.path(spec)}: nothing to rewrite")
        txn = uuid.uuid4().hex
        writer = (df.write.format("delta").mode("overwrite").option("overwriteSchema", "true")
                  .option("userMetadata", self._metadata_json({**meta, "genrec.txn": txn})))
        if spec.partition_by:
            writer = writer.partitionBy(*spec.partition_by)
        try:
            writer.save(self.path(spec))
        except Exception as e:
            if _is_conflict(e):
                raise ConcurrentWriteError(f"table {spec.name}: rewrite lost to a concurrent commit; nothing was "
                                           f"written") from e
            raise
        return self._result(spec, txn)

    def restore(self, spec, version: int) -> int:
        self._delta_table(spec).restoreToVersion(version)
        return self.version(spec)

    def _result(self, spec, txn: str) -> WriteResult:
        """The version, files and rows of the commit tagged `txn`, from its operation metrics."""
        commit = self._find_commit(spec, txn)
        metrics = commit["operationMetrics"] or {}
        files = metrics.get("numFiles", metrics.get("numAddedFiles"))
        if files is not None and int(files) == 0:
            metrics.setdefault("numOutputRows", "0")  # an empty write (e.g. a partition emptied) has none
        if "numOutputRows" not in metrics or files is None:
            raise RuntimeError(f"table {spec.name}: commit {commit['version']} carries no operation metrics "
                               f"({sorted(metrics)}); is spark.databricks.delta.history.metricsEnabled off?")
        return WriteResult(spec.name, int(commit["version"]), int(files), int(metrics["numOutputRows"]))

    def _find_commit(self, spec, txn: str) -> dict:
        """The history row (version, operation, operationMetrics, engineInfo) of the commit tagged `txn`."""
        history = self._delta_table(spec).history(_HISTORY_WINDOW)
        rows = (history.where(history.userMetadata.contains(txn))
                .select("version", "operation", "operationMetrics", "engineInfo").collect())
        if len(rows) != 1:
            raise RuntimeError(f"table {spec.name}: {len(rows)} commits tagged with transaction {txn} in the last "
                               f"{_HISTORY_WINDOW} versions")
        return rows[0].asDict()

    def append_rows(self, spec, rows: pa.Table, metadata: dict[str, str] | None = None) -> int:
        rows = rows.select(spec.columns).cast(spec.schema)
        df = self.spark.createDataFrame(rows, schema=spark_schema(spec))
        return self.write(df, spec, metadata=metadata).version

    # ------------------------------------------------------------------ layout and retention
    @contextmanager
    def _session_conf(self, settings: dict[str, str]):
        conf = self.spark.conf
        old = {k: conf.get(k, None) for k in settings}
        for k, v in settings.items():
            conf.set(k, v)
        try:
            yield
        finally:
            for k, v in old.items():
                conf.unset(k) if v is None else conf.set(k, v)

    def optimize(self, spec, zorder_by=(), partitions=None, target_file_bytes=None,
                 row_group_bytes=None) -> OptimizeResult:
        """`OPTIMIZE <table> [WHERE <partitions>] [ZORDER BY (<cols>)]` in one commit (file size:
        spark.databricks.delta.optimize.maxFileSize, row groups: parquet.block.size, for this call)."""
        table = self._delta_table(spec)
        if table is None:
            raise FileNotFoundError(f"table {spec.name} does not exist at {self.path(spec)}")
        txn = uuid.uuid4().hex
        settings = {"spark.databricks.delta.commitInfo.userMetadata":
                    self._metadata_json({"genrec.table": spec.name, "genrec.txn": txn})}
        if target_file_bytes:
            settings["spark.databricks.delta.optimize.maxFileSize"] = str(int(target_file_bytes))
        if row_group_bytes:  # session SQL conf reaches the Hadoop conf the Parquet writer reads
            settings["parquet.block.size"] = str(int(row_group_bytes))
        with self._session_conf(settings):
            builder = table.optimize()
            if partitions:
                builder = builder.where(replace_where_sql(normalize_partitions(spec, partitions), spec))
            out = builder.executeZOrderBy(*zorder_by) if zorder_by else builder.executeCompaction()
            metrics = out.select("metrics.numFilesAdded", "metrics.numFilesRemoved").first()
        added, removed = int(metrics[0] or 0), int(metrics[1] or 0)
        version = int(self._find_commit(spec, txn)["version"]) if (added or removed) else None
        log.info("delta optimize table=%s backend=native zorder=%s version=%s removed=%d added=%d", spec.name,
                 list(zorder_by), version, removed, added)
        return OptimizeResult(spec.name, version, removed, added, tuple(zorder_by))

    def vacuum(self, spec, retention_hours: float, dry_run: bool = False) -> VacuumResult:
        """`VACUUM <table> RETAIN <n> HOURS` (DRY RUN lists what would go)."""
        if retention_hours < 0:
            raise ValueError("retention_hours must be >= 0")
        if self._delta_table(spec) is None:
            return VacuumResult(spec.name, 0, retention_hours, dry_run)
        path = self.path(spec).replace("`", "``")
        # The connector refuses retentions under its 7-day default unless this check is off: the
        # configured retention is the policy here.
        # The connector lists the table with spark.sql.sources.parallelPartitionDiscovery.parallelism
        # tasks (10,000 by default): as many as the session's shuffle partitions do here.
        listing = self.spark.conf.get("spark.sql.shuffle.partitions", "8")
        with self._session_conf({"spark.databricks.delta.retentionDurationCheck.enabled": "false",
                                 "spark.sql.sources.parallelPartitionDiscovery.parallelism": listing}):
            listed = self.spark.sql(f"VACUUM delta.`{path}` RETAIN {float(retention_hours)} HOURS DRY RUN").count()
            if not dry_run and listed:
                self.spark.sql(f"VACUUM delta.`{path}` RETAIN {float(retention_hours)} HOURS").collect()
        log.info("delta vacuum table=%s backend=native retention_h=%s files=%d dry_run=%s", spec.name,
                 retention_hours, listed, dry_run)
        return VacuumResult(spec.name, listed, retention_hours, dry_run)
