"""Faults during a Delta write: a Python worker killed mid-task is retried by Spark with no duplicate
rows; a failure after the Spark write but before the commit leaves the previous version."""
import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from genrec_model.data.schemas import TableSpec
from udfs.delta_store import DeltaStore

pytestmark = pytest.mark.spark

REPO = Path(__file__).resolve().parents[1]
RECS = TableSpec(
    "recs_faults",
    pa.schema([pa.field("user_id", pa.string(), False), pa.field("score", pa.float64()),
               pa.field("run_date", pa.string(), False)]),
    partition_by=("run_date",), write_mode="partition")
N_USERS = 500


def _kill_first_attempt(marker_dir: str):
    def fn(batches):
        from pyspark import TaskContext

        ctx = TaskContext.get()
        for pdf in batches:
            if ctx.attemptNumber() == 0 and ctx.partitionId() in (1, 2):
                Path(marker_dir, f"killed-p{ctx.partitionId()}-s{ctx.stageId()}").touch()
                os._exit(17)  # the Python worker dies without a word, mid-task
            yield pdf
    return fn


def worker_killed_scenario(lake: str, marker_dir: str) -> dict:
    """Runs in its own process: needs local[2,2] (2 cores, up to 2 attempts per task)."""
    from genrec_model.config import SparkConfig
    from udfs.session import build_spark

    spark = build_spark(SparkConfig(master="local[2,2]", shuffle_partitions=2, driver_memory="1g"), "faults")
    try:
        store = DeltaStore(spark, lake)
        df = spark.createDataFrame([(f"u{i}", float(i), "2024-01-01") for i in range(N_USERS)],
                                   "user_id string, score double, run_date string").repartition(4)
        df = df.mapInPandas(_kill_first_attempt(marker_dir), df.schema)
        res = store.write(df, RECS, replace_partitions=[{"run_date": "2024-01-01"}])
        out, _ = store.read(RECS)
        users = [r["user_id"] for r in out.collect()]
        return {"version": res.version, "num_rows": res.num_rows, "rows": len(users), "distinct": len(set(users)),
                "master": spark.sparkContext.master}
    finally:
        spark.stop()


def test_python_worker_killed_is_retried_without_duplicates(tmp_path):
    lake, markers = tmp_path / "lake", tmp_path / "markers"
    markers.mkdir()
    code = ("import json, sys; from tests.test_faults import worker_killed_scenario as s; "
            f"print('RESULT=' + json.dumps(s({str(lake)!r}, {str(markers)!r})))")
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT="))[7:])
    killed = sorted(os.listdir(markers))
    assert len(killed) == 2, killed  # two tasks lost their worker on the first attempt, then were retried
    assert result["master"] == "local[2,2]"
    assert result["version"] == 0 and result["num_rows"] == N_USERS
    assert result["rows"] == N_USERS == result["distinct"]  # every user exactly once
    table = DeltaTable(str(lake / "recs_faults")).to_pandas()
    assert len(table) == N_USERS and table["user_id"].is_unique


def _rows(spark, tag, n=30):
    return spark.createDataFrame([(f"{tag}{i}", float(i), "2024-01-01") for i in range(n)],
                                 "user_id string, score double, run_date string").repartition(3)


def test_failure_between_spark_write_and_commit(spark, tmp_path, monkeypatch):
    store = DeltaStore(spark, str(tmp_path / "lake"))
    part = [{"run_date": "2024-01-01"}]
    store.write(_rows(spark, "a"), RECS, replace_partitions=part)
    data_files = lambda: sorted(p for p in glob.glob(os.path.join(store.path(RECS), "run_date=*", "*"))
                                if not os.path.basename(p).startswith("."))
    before = data_files()

    def driver_dies_before_commit(self, *args, **kwargs):
        raise RuntimeError("driver lost before the Delta commit")

    monkeypatch.setattr(DeltaStore, "_commit", driver_dies_before_commit)
    with pytest.raises(RuntimeError, match="before the Delta commit"):
        store.write(_rows(spark, "b"), RECS, replace_partitions=part)
    assert store.version(RECS) == 0
    df, _ = store.read(RECS)
    assert sorted(r["user_id"] for r in df.collect()) == sorted(f"a{i}" for i in range(30))
    assert data_files() == before  # the moved files of the failed attempt were deleted again
    assert not glob.glob(os.path.join(store.path(RECS), "_staging", "*"))
    monkeypatch.undo()
    res = store.write(_rows(spark, "b"), RECS, replace_partitions=part)  # the re-run completes
    assert (res.version, res.num_rows) == (1, 30)
    df, _ = store.read(RECS)
    assert sorted(r["user_id"] for r in df.collect()) == sorted(f"b{i}" for i in range(30))
