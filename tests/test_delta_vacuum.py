"""Orphan cleanup: files no log entry references (and leftover staging folders) are invisible to
readers and removed by `vacuum_orphans`; the log and everything it names stay."""
import os
import shutil
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from genrec_model.data.schemas import TableSpec
from udfs.delta_store import DeltaStore

pytestmark = pytest.mark.spark

RECS = TableSpec(
    "recs_vacuum",
    pa.schema([pa.field("user_id", pa.string(), False), pa.field("score", pa.float64()),
               pa.field("run_date", pa.string(), False)]),
    partition_by=("run_date",), write_mode="partition")
HOUR = 3600


def _rows(spark, date, n, tag):
    return spark.createDataFrame([(f"{tag}{i}", float(i), date) for i in range(n)],
                                 "user_id string, score double, run_date string")


def _age(path, seconds):
    old = time.time() - seconds
    paths = [path] if os.path.isfile(path) else [os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs]
    for p in paths:
        os.utime(p, (old, old))


def _users(store, spec):
    df, _ = store.read(spec)
    return sorted(r["user_id"] for r in df.collect())


def test_orphans_invisible_then_vacuumed(spark, tmp_path):
    store = DeltaStore(spark, str(tmp_path / "lake"))
    store.write(_rows(spark, "2024-01-01", 4, "a"), RECS, replace_partitions=[{"run_date": "2024-01-01"}])
    store.write(_rows(spark, "2024-01-01", 3, "b"), RECS, replace_partitions=[{"run_date": "2024-01-01"}])
    root = store.path(RECS)
    _age(root, 2 * HOUR)  # every committed file is old too: only the log decides what stays
    orphan = os.path.join(root, "run_date=2024-01-01", "part-orphan.parquet")
    pq.write_table(pa.table({"user_id": ["zz"], "score": [9.0]}), orphan)
    staging = os.path.join(root, "_staging", "deadbeef", "run_date=2024-01-01")
    os.makedirs(staging)
    shutil.copy(orphan, os.path.join(staging, "part-0.parquet"))
    fresh_txn = os.path.join(root, "_staging", "cafe01")  # a write in progress right now
    os.makedirs(fresh_txn)
    pq.write_table(pa.table({"user_id": ["yy"]}), os.path.join(fresh_txn, "part-1.parquet"))
    _age(orphan, 2 * HOUR)
    _age(os.path.join(root, "_staging", "deadbeef"), 2 * HOUR)

    assert _users(store, RECS) == ["b0", "b1", "b2"]  # orphans invisible to Spark and delta-rs
    assert sorted(DeltaTable(root).to_pandas()["user_id"]) == ["b0", "b1", "b2"]
    log_before = sorted(os.listdir(os.path.join(root, "_delta_log")))

    dry = store.vacuum_orphans(RECS, older_than_seconds=HOUR, dry_run=True)
    assert dry.deleted_files == ["run_date=2024-01-01/part-orphan.parquet"] and os.path.exists(orphan)
    res = store.vacuum_orphans(RECS, older_than_seconds=HOUR)
    assert res.deleted_files == ["run_date=2024-01-01/part-orphan.parquet"]
    assert res.deleted_staging == ["_staging/deadbeef"] and res.bytes_freed > 0
    assert not os.path.exists(orphan) and not os.path.exists(os.path.join(root, "_staging", "deadbeef"))
    assert os.path.exists(fresh_txn)  # younger than the threshold: kept
    assert sorted(os.listdir(os.path.join(root, "_delta_log"))) == log_before
    assert _users(store, RECS) == ["b0", "b1", "b2"]
    assert sorted(DeltaTable(root).to_pandas()["user_id"]) == ["b0", "b1", "b2"]
    old, _ = store.read(RECS, version=0)  # the replaced files are still named by the log: time travel works
    assert sorted(r["user_id"] for r in old.collect()) == ["a0", "a1", "a2", "a3"]
    assert store.vacuum_orphans(RECS, older_than_seconds=0).deleted_files == []  # log-named files never go


def test_recent_orphans_kept_and_missing_table(spark, tmp_path):
    store = DeltaStore(spark, str(tmp_path / "lake"))
    assert store.vacuum_orphans(RECS, older_than_seconds=HOUR).deleted_files == []  # no table yet
    store.write(_rows(spark, "2024-01-02", 2, "c"), RECS, replace_partitions=[{"run_date": "2024-01-02"}])
    orphan = os.path.join(store.path(RECS), "run_date=2024-01-02", "part-new.parquet")
    pq.write_table(pa.table({"user_id": ["n"], "score": [1.0]}), orphan)
    assert store.vacuum_orphans(RECS, older_than_seconds=HOUR).deleted_files == []
    assert os.path.exists(orphan)
    with pytest.raises(ValueError):
        store.vacuum_orphans(RECS, older_than_seconds=-1)
