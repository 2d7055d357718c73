"""Delta round trips written from Spark: read back by Spark, delta-rs and DuckDB; atomic replace."""
import glob
import os

import pandas as pd
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from genrec_model.data.schemas import TableSpec
from udfs.delta_store import DeltaStore, SchemaMismatchError

pytestmark = pytest.mark.spark

RECS = TableSpec(
    "recs_test",
    pa.schema([pa.field("user_id", pa.string(), False), pa.field("items", pa.list_(pa.string())),
               pa.field("score", pa.float64()), pa.field("run_date", pa.string(), False)]),
    partition_by=("run_date",), write_mode="partition")


def _rows(spark, date, n, tag="a"):
    data = [(f"u{i}", [f"{tag}{i}", f"{tag}{i + 1}"], float(i), date) for i in range(n)]
    return spark.createDataFrame(data, "user_id string, items array<string>, score double, run_date string")


@pytest.fixture
def store(spark, tmp_path):
    return DeltaStore(spark, str(tmp_path / "lake"), delta_mode="auto")


def test_round_trip_spark_deltalake_duckdb(spark, store):
    assert not store.native  # no Delta JARs on these machines: the delta-rs commit path
    res = store.write(_rows(spark, "2024-01-01", 50).repartition(3), RECS,
                      replace_partitions=[{"run_date": "2024-01-01"}])
    assert (res.version, res.num_rows) == (0, 50)
    df, version = store.read(RECS)
    got = df.orderBy("score").toPandas()
    assert version == 0 and len(got) == 50
    assert got.loc[3, "user_id"] == "u3" and list(got.loc[3, "items"]) == ["a3", "a4"]
    assert set(got["run_date"]) == {"2024-01-01"}
    table = DeltaTable(store.path(RECS)).to_pyarrow_table()
    assert table.num_rows == 50 and table.schema.field("run_date").type == pa.string()
    assert sorted(table.column("user_id").to_pylist()) == sorted(f"u{i}" for i in range(50))


def test_duckdb_reads_the_table(spark, store):
    duckdb = pytest.importorskip("duckdb")
    ext = pytest.importorskip("duckdb_extension_delta")
    files = glob.glob(os.path.join(os.path.dirname(ext.__file__), "**", "delta.duckdb_extension"), recursive=True)
    if not files:
        pytest.skip("duckdb delta extension file not found in the package")
    store.write(_rows(spark, "2024-01-01", 7), RECS, replace_partitions=[{"run_date": "2024-01-01"}])
    con = duckdb.connect()
    con.install_extension(files[0])
    con.load_extension("delta")
    n, total = con.execute(f"select count(*), sum(score) from delta_scan('{store.path(RECS)}')").fetchone()
    assert (n, total) == (7, 21.0)


def test_same_date_replaces_other_dates_kept(spark, store):
    store.write(_rows(spark, "2024-01-01", 20), RECS, replace_partitions=[{"run_date": "2024-01-01"}])
    store.write(_rows(spark, "2024-01-02", 5), RECS, replace_partitions=[{"run_date": "2024-01-02"}])
    res = store.write(_rows(spark, "2024-01-01", 20, tag="b"), RECS, replace_partitions=[{"run_date": "2024-01-01"}])
    assert res.version == 2
    df, _ = store.read(RECS)
    counts = df.groupBy("run_date").count().toPandas().set_index("run_date")["count"].to_dict()
    assert counts == {"2024-01-01": 20, "2024-01-02": 5}  # same row count, no duplicates
    firsts = {r["items"][0][0] for r in df.where("run_date = '2024-01-01'").collect()}
    assert firsts == {"b"}
    old, _ = store.read(RECS, version=0)  # time travel to the first write
    assert old.count() == 20 and {r["items"][0][0] for r in old.collect()} == {"a"}


def test_failure_inside_a_task_leaves_previous_version(spark, store):
    store.write(_rows(spark, "2024-01-01", 30), RECS, replace_partitions=[{"run_date": "2024-01-01"}])

    def explode_midway(batches):
        for i, pdf in enumerate(batches):
            if (pdf["score"] >= 40).any():
                raise RuntimeError("boom inside a task")
            yield pdf

    bad = _rows(spark, "2024-01-01", 60, tag="x").repartition(4).mapInPandas(
        explode_midway, "user_id string, items array<string>, score double, run_date string")
    with pytest.raises(Exception, match="boom inside a task"):
        store.write(bad, RECS, replace_partitions=[{"run_date": "2024-01-01"}])
    assert store.version(RECS) == 0
    df, _ = store.read(RECS)
    assert df.count() == 30 and {r["items"][0][0] for r in df.collect()} == {"a"}
    assert DeltaTable(store.path(RECS)).to_pyarrow_table().num_rows == 30
    assert not glob.glob(os.path.join(store.path(RECS), "_staging", "*", "**", "*.parquet"), recursive=True)


def test_schema_enforced_on_write(spark, store):
    wrong_type = spark.createDataFrame([("u", ["a"], "high", "2024-01-01")],
                                       "user_id string, items array<string>, score string, run_date string")
    with pytest.raises(SchemaMismatchError, match="score is string, declared double"):
        store.write(wrong_type, RECS, replace_partitions=[{"run_date": "2024-01-01"}])
    missing = _rows(spark, "2024-01-01", 2).drop("score")
    with pytest.raises(SchemaMismatchError, match=r"missing columns \['score'\]"):
        store.write(missing, RECS, replace_partitions=[{"run_date": "2024-01-01"}])
    nulls = spark.createDataFrame([(None, ["a"], 1.0, "2024-01-01")],
                                  "user_id string, items array<string>, score double, run_date string")
    with pytest.raises(Exception, match="user_id is declared non-null"):
        store.write(nulls, RECS, replace_partitions=[{"run_date": "2024-01-01"}])
    assert store.version(RECS) is None  # nothing was created by the failed writes
    outside = _rows(spark, "2024-01-09", 2)
    with pytest.raises(ValueError, match="outside the partitions being replaced"):
        store.write(outside, RECS, replace_partitions=[{"run_date": "2024-01-01"}])


def test_append_rows_and_snapshot_mode(spark, store):
    snap = TableSpec("snap_test", pa.schema([pa.field("k", pa.int64(), False)]))
    for n in (5, 3):
        store.write(spark.range(n).withColumnRenamed("id", "k"), snap)
    df, version = store.read(snap)
    assert version == 1 and sorted(r["k"] for r in df.collect()) == [0, 1, 2]
    log = TableSpec("log_test", pa.schema([pa.field("k", pa.int64(), False)]), write_mode="append")
    store.append_rows(log, pa.table({"k": [1, 2]}))
    store.append_rows(log, pa.table({"k": [3]}))
    df, version = store.read(log)
    assert version == 1 and sorted(r["k"] for r in df.collect()) == [1, 2, 3]
    assert isinstance(DeltaTable(store.path(log)).to_pandas(), pd.DataFrame)


def test_one_commit_replaces_several_partitions(spark, store):
    multi = TableSpec("multi_test", RECS.schema, partition_by=("run_date",), write_mode="partition")
    both = _rows(spark, "2024-01-01", 4).unionByName(_rows(spark, "2024-01-02", 3))
    store.write(both, multi, replace_partitions=[{"run_date": "2024-01-01"}, {"run_date": "2024-01-02"}])
    store.write(_rows(spark, "2024-01-03", 2), multi, replace_partitions=[{"run_date": "2024-01-03"}])
    again = _rows(spark, "2024-01-01", 1, tag="z")  # 01-02 listed but empty: it ends up empty
    res = store.write(again, multi, replace_partitions=[{"run_date": "2024-01-01"}, {"run_date": "2024-01-02"}])
    assert res.version == 2
    df, _ = store.read(multi)
    counts = df.groupBy("run_date").count().toPandas().set_index("run_date")["count"].to_dict()
    assert counts == {"2024-01-01": 1, "2024-01-03": 2}
