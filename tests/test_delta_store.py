"""Delta round trips written from Spark through both DeltaStore backends (the Delta Spark connector and
the delta-rs commit path): read back by Spark, delta-rs and DuckDB; atomic replace; write results of
this commit only; change data feed; Z-order; vacuum; the same tables whichever backend wrote them; tables
written with a string run_date migrated to a date by the jobs' write path."""
import dataclasses
import datetime as dt
import glob
import json
import os

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from genrec_model.data.schemas import TableSpec
from udfs.delta_store import DeltaStore, SchemaMismatchError

pytestmark = pytest.mark.spark

RECS = TableSpec(
    "recs_test",
    pa.schema([pa.field("user_id", pa.string(), False), pa.field("items", pa.list_(pa.string())),
               pa.field("score", pa.float64()), pa.field("run_date", pa.date32(), False)]),
    partition_by=("run_date",), write_mode="partition")
DDL = "user_id string, items array<string>, score double, run_date date"
CDF = {"recs_test": {"delta.enableChangeDataFeed": "true"}}
D1, D2 = dt.date(2024, 1, 1), dt.date(2024, 1, 2)


def _rows(spark, date, n, tag="a", start=0):
    """Rows of one run date (given as the 'YYYY-MM-DD' text the jobs get), run_date a DATE column."""
    day = dt.date.fromisoformat(date)
    data = [(f"u{i}", [f"{tag}{i}", f"{tag}{i + 1}"], float(i), day) for i in range(start, start + n)]
    return spark.createDataFrame(data, DDL)


def _log(path):
    """{version: [actions]} of the JSON commits in _delta_log."""
    out = {}
    for f in sorted(glob.glob(os.path.join(path, "_delta_log", "*.json"))):
        with open(f) as fh:
            out[int(os.path.basename(f)[:-5])] = [json.loads(line) for line in fh if line.strip()]
    return out


def _adds(path, version):
    return [a["add"] for a in _log(path)[version] if "add" in a]


@pytest.fixture
def store(spark, tmp_path, backend):
    return DeltaStore(spark, str(tmp_path / "lake"), delta_mode=backend)


def test_backend_selected(spark, store, backend):
    assert store.backend == backend and store.native == (backend == "native")
    assert type(store).__name__ == {"native": "NativeDeltaStore", "delta_rs": "DeltaRsStore"}[backend]
    auto = DeltaStore(spark, store.root)  # the test session loads the connector: auto picks it
    assert auto.backend == "native"


def test_round_trip_spark_deltalake_duckdb(spark, store):
    res = store.write(_rows(spark, "2024-01-01", 50).repartition(3), RECS,
                      replace_partitions=[{"run_date": "2024-01-01"}])
    assert (res.version, res.num_rows) == (0, 50)
    assert res.num_files == len(_adds(store.path(RECS), 0)) >= 1
    df, version = store.read(RECS)
    got = df.orderBy("score").toPandas()
    assert version == 0 and len(got) == 50
    assert got.loc[3, "user_id"] == "u3" and list(got.loc[3, "items"]) == ["a3", "a4"]
    assert set(got["run_date"]) == {D1}
    table = DeltaTable(store.path(RECS)).to_pyarrow_table()
    assert table.num_rows == 50 and table.schema.field("run_date").type == pa.date32()
    assert DeltaTable(store.path(RECS)).to_pyarrow_table(filters=[("run_date", "=", D1)]).num_rows == 50
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


def test_write_reports_this_commit_and_its_engine(spark, store, backend):
    """Rows and files of THIS write (not the table's), from the commit; engine named in commitInfo."""
    store.write(_rows(spark, "2024-01-01", 40).repartition(4), RECS, replace_partitions=[{"run_date": "2024-01-01"}])
    store.write(_rows(spark, "2024-01-02", 30).repartition(3), RECS, replace_partitions=[{"run_date": "2024-01-02"}])
    res = store.write(_rows(spark, "2024-01-01", 7, tag="b").repartition(2), RECS,
                      replace_partitions=[{"run_date": "2024-01-01"}])
    assert (res.version, res.num_rows) == (2, 7)
    adds = _adds(store.path(RECS), 2)
    assert res.num_files == len(adds) and sum(json.loads(a["stats"])["numRecords"] for a in adds) == 7
    removes = [a["remove"] for a in _log(store.path(RECS))[2] if "remove" in a]
    assert {r["partitionValues"]["run_date"] for r in removes} == {"2024-01-01"}  # only the replaced partition
    info = store.commit_info(RECS, 2)
    if backend == "native":
        assert info["engineInfo"].startswith("Apache-Spark/4.2") and "Delta-Lake/4.4" in info["engineInfo"]
        assert info["operation"] == "WRITE" and "2024-01-01" in json.dumps(info["operationParameters"])
    else:
        assert "Delta-Lake" not in json.dumps(info) and info.get("genrec.table") == "recs_test"
    empty = store.write(spark.createDataFrame([], DDL), RECS, replace_partitions=[{"run_date": "2024-01-02"}])
    assert (empty.version, empty.num_rows) == (3, 0)
    df, _ = store.read(RECS)
    assert df.count() == 7


def test_same_date_replaces_other_dates_kept(spark, store):
    store.write(_rows(spark, "2024-01-01", 20), RECS, replace_partitions=[{"run_date": "2024-01-01"}])
    store.write(_rows(spark, "2024-01-02", 5), RECS, replace_partitions=[{"run_date": "2024-01-02"}])
    res = store.write(_rows(spark, "2024-01-01", 20, tag="b"), RECS, replace_partitions=[{"run_date": "2024-01-01"}])
    assert res.version == 2 and res.num_rows == 20
    df, _ = store.read(RECS)
    counts = df.groupBy("run_date").count().toPandas().set_index("run_date")["count"].to_dict()
    assert counts == {D1: 20, D2: 5}  # same row count, no duplicates
    firsts = {r["items"][0][0] for r in df.where("run_date = '2024-01-01'").collect()}
    assert firsts == {"b"}
    old, _ = store.read(RECS, version=0)  # time travel to the first write
    assert old.count() == 20 and {r["items"][0][0] for r in old.collect()} == {"a"}
    again = store.write(_rows(spark, "2024-01-01", 20, tag="b"), RECS, replace_partitions=[{"run_date": "2024-01-01"}])
    df, _ = store.read(RECS)  # an identical re-run: same rows, one more version
    assert again.version == 3 and df.count() == 25


def test_failure_inside_a_task_leaves_previous_version(spark, store):
    store.write(_rows(spark, "2024-01-01", 30), RECS, replace_partitions=[{"run_date": "2024-01-01"}])

    def explode_midway(batches):
        for i, pdf in enumerate(batches):
            if (pdf["score"] >= 40).any():
                raise RuntimeError("boom inside a task")
            yield pdf

    bad = _rows(spark, "2024-01-01", 60, tag="x").repartition(4).mapInPandas(explode_midway, DDL)
    with pytest.raises(Exception, match="boom inside a task"):
        store.write(bad, RECS, replace_partitions=[{"run_date": "2024-01-01"}])
    assert store.version(RECS) == 0
    df, _ = store.read(RECS)
    assert df.count() == 30 and {r["items"][0][0] for r in df.collect()} == {"a"}
    assert DeltaTable(store.path(RECS)).to_pyarrow_table().num_rows == 30
    assert not glob.glob(os.path.join(store.path(RECS), "_staging", "*", "**", "*.parquet"), recursive=True)


def test_schema_enforced_on_write(spark, store):
    wrong_type = spark.createDataFrame([("u", ["a"], "high", D1)], DDL.replace("score double", "score string"))
    with pytest.raises(SchemaMismatchError, match="score is string, declared double"):
        store.write(wrong_type, RECS, replace_partitions=[{"run_date": "2024-01-01"}])
    text_date = spark.createDataFrame([("u", ["a"], 1.0, "2024-01-01")], DDL.replace("run_date date", "run_date string"))
    with pytest.raises(SchemaMismatchError, match="run_date is string, declared date"):  # never cast silently
        store.write(text_date, RECS, replace_partitions=[{"run_date": "2024-01-01"}])
    with pytest.raises(ValueError, match="not a YYYY-MM-DD date"):
        store.write(_rows(spark, "2024-01-01", 1), RECS, replace_partitions=[{"run_date": "2024-1-1"}])
    missing = _rows(spark, "2024-01-01", 2).drop("score")
    with pytest.raises(SchemaMismatchError, match=r"missing columns \['score'\]"):
        store.write(missing, RECS, replace_partitions=[{"run_date": "2024-01-01"}])
    nulls = spark.createDataFrame([(None, ["a"], 1.0, D1)], DDL)
    with pytest.raises(Exception, match="user_id is declared non-null"):
        store.write(nulls, RECS, replace_partitions=[{"run_date": "2024-01-01"}])
    assert store.version(RECS) is None  # nothing was created by the failed writes
    outside = _rows(spark, "2024-01-09", 2)
    with pytest.raises(Exception, match="outside the partitions being replaced"):
        store.write(outside, RECS, replace_partitions=[{"run_date": "2024-01-01"}])
    assert store.version(RECS) is None
    store.write(_rows(spark, "2024-01-01", 2), RECS, replace_partitions=[{"run_date": "2024-01-01"}])
    other = TableSpec("recs_test", pa.schema([pa.field("user_id", pa.string()), pa.field("n", pa.int64()),
                                              pa.field("run_date", pa.string())]),
                      partition_by=("run_date",), write_mode="partition")
    with pytest.raises(SchemaMismatchError, match="migrate or write elsewhere"):  # the table on disk differs
        store.write(spark.createDataFrame([("u", 1, "2024-01-01")], "user_id string, n bigint, run_date string"),
                    other, replace_partitions=[{"run_date": "2024-01-01"}])
    assert store.version(RECS) == 0


def test_append_rows_and_snapshot_mode(spark, store):
    snap = TableSpec("snap_test", pa.schema([pa.field("k", pa.int64(), False)]))
    for n in (5, 3):
        res = store.write(spark.range(n).withColumnRenamed("id", "k"), snap)
    assert res.num_rows == 3
    df, version = store.read(snap)
    assert version == 1 and sorted(r["k"] for r in df.collect()) == [0, 1, 2]
    log = TableSpec("log_test", pa.schema([pa.field("k", pa.int64(), False),
                                           pa.field("m", pa.map_(pa.string(), pa.float64()))]), write_mode="append")
    assert store.append_rows(log, pa.table({"k": [1, 2], "m": [[("a", 1.0)], None]}, schema=log.schema)) == 0
    assert store.append_rows(log, pa.table({"k": [3], "m": [[("b", 2.0)]]}, schema=log.schema)) == 1
    df, version = store.read(log)
    assert version == 1 and sorted(r["k"] for r in df.collect()) == [1, 2, 3]
    assert isinstance(DeltaTable(store.path(log)).to_pandas(), pd.DataFrame)
    with pytest.raises(Exception):
        store.append_rows(log, pa.table({"k": pa.array([None], pa.int64()), "m": [None]}))  # declared non-null


def test_one_commit_replaces_several_partitions(spark, store):
    multi = TableSpec("multi_test", RECS.schema, partition_by=("run_date",), write_mode="partition")
    both = _rows(spark, "2024-01-01", 4).unionByName(_rows(spark, "2024-01-02", 3))
    store.write(both, multi, replace_partitions=[{"run_date": "2024-01-01"}, {"run_date": "2024-01-02"}])
    store.write(_rows(spark, "2024-01-03", 2), multi, replace_partitions=[{"run_date": "2024-01-03"}])
    again = _rows(spark, "2024-01-01", 1, tag="z")  # 01-02 listed but empty: it ends up empty
    res = store.write(again, multi, replace_partitions=[{"run_date": "2024-01-01"}, {"run_date": "2024-01-02"}])
    assert res.version == 2 and res.num_rows == 1
    df, _ = store.read(multi)
    counts = df.groupBy("run_date").count().toPandas().set_index("run_date")["count"].to_dict()
    assert counts == {D1: 1, dt.date(2024, 1, 3): 2}


def test_change_data_feed_shows_only_what_changed(spark, tmp_path, backend):
    """recommendations-style table: CDF on from creation, a replace shows as deletes + inserts of that
    partition only, readable by delta-rs (what a nearline cache would follow)."""
    store = DeltaStore(spark, str(tmp_path / "lake"), delta_mode=backend, table_properties=CDF)
    store.write(_rows(spark, "2024-01-01", 5), RECS, replace_partitions=[{"run_date": "2024-01-01"}])
    store.write(_rows(spark, "2024-01-02", 4), RECS, replace_partitions=[{"run_date": "2024-01-02"}])
    store.write(_rows(spark, "2024-01-02", 3, tag="b"), RECS, replace_partitions=[{"run_date": "2024-01-02"}])
    table = DeltaTable(store.path(RECS))
    assert table.metadata().configuration.get("delta.enableChangeDataFeed") == "true"
    changes = pa.table(table.load_cdf(starting_version=2)).to_pandas()
    kinds = changes.groupby("_change_type")["user_id"].apply(sorted).to_dict()
    assert kinds == {"delete": ["u0", "u1", "u2", "u3"], "insert": ["u0", "u1", "u2"]}
    assert set(changes["run_date"]) == {D2} and set(changes["_commit_version"]) == {2}
    if backend == "native":  # and Spark's own change feed reader agrees
        cdf = (spark.read.format("delta").option("readChangeFeed", "true").option("startingVersion", 2)
               .load(store.path(RECS)))
        assert sorted(cdf.groupBy("_change_type").count().collect()) == sorted([("delete", 4), ("insert", 3)])
    plain = DeltaStore(spark, str(tmp_path / "plain"), delta_mode=backend)  # other tables: no CDF
    plain.write(_rows(spark, "2024-01-01", 2), RECS, replace_partitions=[{"run_date": "2024-01-01"}])
    assert "delta.enableChangeDataFeed" not in DeltaTable(plain.path(RECS)).metadata().configuration


def test_recommendations_table_gets_the_change_feed(spark, tmp_path, backend):
    from genrec_model.data.schemas import RECOMMENDATIONS

    store = DeltaStore(spark, str(tmp_path / "lake"), delta_mode=backend)
    assert store.properties(RECOMMENDATIONS) == {"delta.enableChangeDataFeed": "true"}


def _file_ranges(path):
    table = DeltaTable(path)
    adds = pa.table(table.get_add_actions(flatten=True)).to_pandas()
    return adds, sorted(zip(adds["min.user_id"], adds["max.user_id"]))


def test_optimize_zorders_one_partition(spark, store, backend):
    users = 400
    # users scattered over 8 files: every file spans (almost) the whole user range
    store.write(_rows(spark, "2024-01-01", users).repartition(8), RECS, replace_partitions=[{"run_date": "2024-01-01"}])
    store.write(_rows(spark, "2024-01-02", 30).repartition(3), RECS, replace_partitions=[{"run_date": "2024-01-02"}])
    before_files, _ = _file_ranges(store.path(RECS))
    other_before = set(before_files[before_files["partition.run_date"] == D2]["path"])
    first = before_files[before_files["partition.run_date"] == D1]
    assert len(before_files) == 11 and len(first) == 8
    assert sum(lo <= "u123" <= hi for lo, hi in zip(first["min.user_id"], first["max.user_id"])) >= 6
    rows_before = sorted(map(tuple, store.read(RECS)[0].select("user_id", "score", "run_date").collect()))
    res = store.optimize(RECS, zorder_by=["user_id"], partitions=[{"run_date": D1}],  # a date works too
                         target_file_bytes=2048)
    # the connector cuts files at target_file_bytes; delta-rs writes a bin this small as one file
    assert res.version == 2 and res.files_removed == 8 and res.files_added >= (2 if backend == "native" else 1)
    assert store.commit_info(RECS, 2)["operation"] == "OPTIMIZE"
    assert all(not a["dataChange"] for a in _adds(store.path(RECS), 2))
    after_files, _ = _file_ranges(store.path(RECS))
    part = after_files[after_files["partition.run_date"] == D1].sort_values("min.user_id")
    assert len(part) == res.files_added
    spans = list(zip(part["min.user_id"], part["max.user_id"]))
    assert all(a[1] < b[0] for a, b in zip(spans, spans[1:]))  # clustered: user ranges do not overlap
    # one user's lookup now touches exactly one file of the partition
    assert sum(lo <= "u123" <= hi for lo, hi in spans) == 1
    if backend == "delta_rs":  # inside the file, rows follow the z-order (one column: sorted)
        ids = pq.read_table(os.path.join(store.path(RECS), part["path"].iloc[0]), columns=["user_id"])
        assert ids.column("user_id").to_pylist() == sorted(f"u{i}" for i in range(users))
    assert set(after_files[after_files["partition.run_date"] == D2]["path"]) == other_before
    rows_after = sorted(map(tuple, store.read(RECS)[0].select("user_id", "score", "run_date").collect()))
    assert rows_after == rows_before  # the layout changed, the rows did not
    again = store.optimize(RECS, zorder_by=["user_id"], partitions=[{"run_date": "2024-01-02"}])
    assert again.files_removed == 3 and again.files_added == 1


def test_vacuum_deletes_only_unreferenced_files(spark, store):
    for tag in ("a", "b", "c"):
        store.write(_rows(spark, "2024-01-01", 10, tag=tag).repartition(2), RECS,
                    replace_partitions=[{"run_date": "2024-01-01"}])
    root = store.path(RECS)
    on_disk = lambda: sorted(p for p in glob.glob(os.path.join(root, "run_date=*", "*.parquet")))  # noqa: E731
    live = {a["path"] for a in _adds(root, 2)}
    assert len(on_disk()) == 6
    keep = store.vacuum(RECS, retention_hours=24)  # everything is younger than a day: nothing goes
    assert keep.files_deleted == 0 and len(on_disk()) == 6
    dry = store.vacuum(RECS, retention_hours=0, dry_run=True)
    assert dry.files_deleted == 4 and len(on_disk()) == 6
    assert store.version(RECS) == 2  # a vacuum with nothing to delete (or a dry run) commits nothing
    res = store.vacuum(RECS, retention_hours=0)
    assert res.files_deleted == 4
    assert [store.commit_info(RECS, v)["operation"] for v in (3, 4)] == ["VACUUM START", "VACUUM END"]
    assert store.vacuum(RECS, retention_hours=0).files_deleted == 0 and store.version(RECS) == 4
    assert {os.path.relpath(p, root) for p in on_disk()} == {p.replace("%3D", "=") for p in live}
    assert sorted(r["items"][0] for r in store.read(RECS)[0].collect()) == sorted(f"c{i}" for i in range(10))
    assert DeltaTable(root).to_pyarrow_table().num_rows == 10
    with pytest.raises(ValueError):
        store.vacuum(RECS, retention_hours=-1)


def test_both_backends_write_the_same_tables(spark, tmp_path):
    """Switching lakehouse.delta_mode changes nothing a reader sees: schema, partitioning, properties,
    rows, versions; and a table written by one backend is continued by the other."""
    from tests.conftest import require_backend

    require_backend(spark, "native")
    seen = {}
    for backend in ("native", "delta_rs"):
        store = DeltaStore(spark, str(tmp_path / backend), delta_mode=backend, table_properties=CDF)
        store.write(_rows(spark, "2024-01-01", 6), RECS, replace_partitions=[{"run_date": "2024-01-01"}])
        store.write(_rows(spark, "2024-01-02", 4, tag="b"), RECS, replace_partitions=[{"run_date": "2024-01-02"}])
        table = DeltaTable(store.path(RECS))
        meta = table.metadata()
        rows = table.to_pandas().sort_values(["run_date", "user_id"]).reset_index(drop=True)
        seen[backend] = (table.version(), table.schema().to_json(), meta.partition_columns,
                         meta.configuration, rows.to_json())
    assert seen["native"] == seen["delta_rs"]
    for writer, continuer in (("native", "delta_rs"), ("delta_rs", "native")):
        other = DeltaStore(spark, str(tmp_path / writer), delta_mode=continuer)
        res = other.write(_rows(spark, "2024-01-02", 2, tag=continuer[0]), RECS,
                          replace_partitions=[{"run_date": "2024-01-02"}])
        assert (res.version, res.num_rows) == (2, 2)
        df, _ = other.read(RECS)
        assert sorted(r["items"][0] for r in df.where("run_date = '2024-01-02'").collect()) == \
            [f"{continuer[0]}0", f"{continuer[0]}1"]


# ------------------------------------------------------------------ run_date string -> date migration
def _string_run_date(spec):
    """`spec` as it was declared before run_date became a date: what older tables on disk hold."""
    i = spec.schema.get_field_index("run_date")
    return dataclasses.replace(spec, schema=spec.schema.set(i, pa.field("run_date", pa.string(), False)))


def _legacy_recommendations(spark, store, spec):
    """A recommendations table written by the string-run_date code: 2 run dates x 2 splits, 7 rows."""
    from udfs.delta_store import spark_schema

    at = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
    legacy = _string_run_date(spec)
    parts = {("2024-03-01", "serve"): 3, ("2024-03-01", "test"): 2, ("2024-03-02", "serve"): 2}
    rows = [(f"u{i}", [(f"i{i}", 1.0, 1)], False, "m0", "cb0", at, day, split, "genrec")
            for (day, split), n in parts.items() for i in range(n)]
    for day in ("2024-03-01", "2024-03-02"):
        store.write(spark.createDataFrame([r for r in rows if r[6] == day], spark_schema(legacy)), legacy,
                    replace_partitions=[{"run_date": day, "split": s, "model": "genrec"} for s in ("serve", "test")])
    return rows


def _job_context(spark, tmp_path, backend, job="recommend"):
    from genrec_model.config import load_config
    from jobs.common import make_context

    cfg = load_config(None, ["data.dataset=mini", "data.path=/unused", f"lakehouse.root={tmp_path / 'lake'}",
                             f"artifacts.root={tmp_path / 'art'}", f"lakehouse.delta_mode={backend}",
                             "run_date=2024-03-02", "lakehouse.zorder={}"])
    return make_context(job, cfg, spark)


def test_string_run_date_tables_are_migrated_by_the_jobs_write(spark, tmp_path, backend):
    """recommendations and job_runs written while run_date was a string: a job's first write rewrites each
    once with run_date a DATE (rows, partitioning, table properties and history kept), then writes its own
    rows; a second run has nothing to migrate."""
    from genrec_model.data.schemas import JOB_RUNS, RECOMMENDATIONS
    from jobs.common import run_recorded
    from udfs.delta_store import spark_schema

    ctx = _job_context(spark, tmp_path, backend)
    old_rows = _legacy_recommendations(spark, ctx.store, RECOMMENDATIONS)
    legacy_runs = _string_run_date(JOB_RUNS)
    ctx.store.append_rows(legacy_runs, pa.Table.from_pylist([{
        "run_id": "r0", "job": "recommend", "run_date": "2024-03-01", "config_hash": "h", "status": "succeeded",
        "started_at": dt.datetime(2024, 3, 1, tzinfo=dt.UTC), "seconds": 1.0}], schema=legacy_runs.schema))
    path = ctx.store.path(RECOMMENDATIONS)
    legacy_version = ctx.store.version(RECOMMENDATIONS)
    assert DeltaTable(path).schema().to_arrow().field("run_date").type == pa.string()

    def write_serve(c, tag):
        new = [(f"u{i}", [(f"{tag}{i}", 2.0, 1)], False, "m1", "cb0", dt.datetime(2024, 3, 2, tzinfo=dt.UTC),
                c.run_day, "serve", "genrec") for i in range(4)]
        c.write(spark.createDataFrame(new, spark_schema(RECOMMENDATIONS)), RECOMMENDATIONS,
                replace_partitions=[{"run_date": c.run_date, "split": "serve", "model": "genrec"}])

    run_recorded(ctx, lambda c: write_serve(c, "n"))
    assert ctx.counts["migrated.recommendations.run_date_rows"] == 7
    assert ctx.counts["migrated.job_runs.run_date_rows"] == 1
    table = DeltaTable(path)
    assert table.version() == legacy_version + 2  # one rewrite, then the job's own write
    assert table.schema().to_arrow().field("run_date").type == pa.date32()
    assert table.metadata().partition_columns == ["run_date", "split", "model"]
    assert table.metadata().configuration.get("delta.enableChangeDataFeed") == "true"
    got = table.to_pandas()
    old_kept = got[got["model_version"] == "m0"]
    assert sorted(zip(old_kept["user_id"], old_kept["run_date"].astype(str), old_kept["split"])) == \
        sorted((r[0], r[6], r[7]) for r in old_rows if (r[6], r[7]) != ("2024-03-02", "serve"))
    assert len(got[got["run_date"] == dt.date(2024, 3, 2)]) == 4  # the job's partition replaced the old one
    df, _ = ctx.store.read(RECOMMENDATIONS)  # Spark reads it with the declared schema on both backends
    assert dict(df.dtypes)["run_date"] == "date" and df.count() == len(got) == 9
    assert df.where(df.run_date == dt.date(2024, 3, 1)).count() == 5
    before = DeltaTable(path, version=legacy_version)  # time travel still reaches the string-typed table
    assert before.schema().to_arrow().field("run_date").type == pa.string() and len(before.to_pandas()) == 7
    migration = ctx.store.commit_info(RECOMMENDATIONS, legacy_version + 1)
    assert "recommendations.run_date_to_date" in json.dumps(migration)
    runs = DeltaTable(ctx.store.path(JOB_RUNS)).to_pandas()
    assert DeltaTable(ctx.store.path(JOB_RUNS)).schema().to_arrow().field("run_date").type == pa.date32()
    assert sorted(runs["run_date"]) == [dt.date(2024, 3, 1), dt.date(2024, 3, 2)]  # the old row and this run's

    again = _job_context(spark, tmp_path, backend)
    run_recorded(again, lambda c: write_serve(c, "m"))
    assert not any(k.startswith("migrated.") for k in again.counts)
    assert DeltaTable(path).version() == legacy_version + 3 and len(DeltaTable(path).to_pandas()) == 9
    assert len(DeltaTable(again.store.path(JOB_RUNS)).to_pandas()) == 3


def test_run_date_migration_refuses_to_lose_rows(spark, tmp_path, backend):
    """Values that are no YYYY-MM-DD date: nothing written. A rewrite that does not hold every row read:
    restored to the table before it, and the job fails."""
    from genrec_model.data.schemas import METRICS
    from udfs.delta_store import spark_schema
    from udfs.table_migrations import MigrationError, migrate_table

    store = DeltaStore(spark, str(tmp_path / "lake"), delta_mode=backend)
    legacy = _string_run_date(METRICS)
    for day in ("2024-03-01", "24-03-02"):
        rows = [("r0", "mini", "genrec", "test", "all", "recall", k, 0.5, "h", day) for k in (1, 5, 10)]
        store.write(spark.createDataFrame(rows, spark_schema(legacy)), legacy, replace_partitions=[{"run_date": day}])
    with pytest.raises(MigrationError, match="'24-03-02'.* not YYYY-MM-DD dates; .* wrote nothing"):
        migrate_table(store, METRICS)
    assert store.version(METRICS) == 1
    store.write(spark.createDataFrame([], spark_schema(legacy)), legacy, replace_partitions=[{"run_date": "24-03-02"}])

    rewrite = store.rewrite
    store.rewrite = lambda df, spec, **kw: rewrite(df.where("k <> 10"), spec, **kw)  # a rewrite that drops rows
    with pytest.raises(MigrationError, match=r"holds 2 rows .* held 3; restored the table to version 2 as version 4"):
        migrate_table(store, METRICS)
    assert store.version(METRICS) == 4  # 3: the bad rewrite, 4: the restore of version 2
    table = DeltaTable(store.path(METRICS))
    assert table.schema().to_arrow().field("run_date").type == pa.string() and len(table.to_pandas()) == 3
    del store.rewrite
    assert migrate_table(store, METRICS) == {"run_date_rows": 3}
    assert migrate_table(store, METRICS) == {}
    got = DeltaTable(store.path(METRICS)).to_pandas()
    assert sorted(got["k"]) == [1, 5, 10] and set(got["run_date"]) == {dt.date(2024, 3, 1)}


def test_rerun_of_an_empty_partition_commits(spark, store):
    """A day with nothing to write, written again (a backfill or a re-run of a night without rejects): each write is
    a commit of its own with 0 rows, never a skipped one the job cannot find."""
    store.write(_rows(spark, "2024-01-02", 5), RECS, replace_partitions=[{"run_date": "2024-01-02"}])
    first = store.write(_rows(spark, "2024-01-01", 0), RECS, replace_partitions=[{"run_date": "2024-01-01"}])
    again = store.write(_rows(spark, "2024-01-01", 0), RECS, replace_partitions=[{"run_date": "2024-01-01"}])
    assert (first.num_rows, again.num_rows) == (0, 0) and again.version == first.version + 1
    df, _ = store.read(RECS)
    assert df.count() == 5
