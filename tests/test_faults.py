"""Faults during a Delta write, on both backends: a Python worker killed mid-task is retried by Spark
with no duplicate rows (and the write reports the rows committed once); a failure after the Spark
write but before the commit leaves the previous version, and the re-run completes."""
import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from genrec_model.data.schemas import TableSpec
from udfs.delta_rs import DeltaRsStore
from udfs.delta_store import DeltaStore

REPO = Path(__file__).resolve().parents[1]
RECS = TableSpec(
    "recs_faults",
    pa.schema([pa.field("user_id", pa.string(), False), pa.field("score", pa.float64()),
               pa.field("run_date", pa.string(), False)]),
    partition_by=("run_date",), write_mode="partition")
N_USERS = 500
BACKENDS = ["native", "delta_rs"]


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


def _session(name: str, extra_conf: dict | None = None):
    from genrec_model.config import SparkConfig
    from udfs.session import build_spark

    return build_spark(SparkConfig(master="local[2,2]", shuffle_partitions=2, driver_memory="1g",
                                   extra_conf=extra_conf or {}), name)


def worker_killed_scenario(lake: str, marker_dir: str, backend: str) -> dict:
    """Runs in its own process: needs local[2,2] (2 cores, up to 2 attempts per task)."""
    spark = _session("faults")
    try:
        store = DeltaStore(spark, lake, delta_mode=backend)
        df = spark.createDataFrame([(f"u{i}", float(i), "2024-01-01") for i in range(N_USERS)],
                                   "user_id string, score double, run_date string").repartition(4)
        df = df.mapInPandas(_kill_first_attempt(marker_dir), df.schema)
        res = store.write(df, RECS, replace_partitions=[{"run_date": "2024-01-01"}])
        out, _ = store.read(RECS)
        users = [r["user_id"] for r in out.collect()]
        return {"version": res.version, "num_rows": res.num_rows, "rows": len(users), "distinct": len(set(users)),
                "master": spark.sparkContext.master, "backend": store.backend}
    finally:
        spark.stop()


def _run_scenario(call: str, env_extra: dict | None = None) -> dict:
    code = f"import json, sys; import tests.test_faults as t; print('RESULT=' + json.dumps(t.{call}))"
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYTHONPATH": str(REPO), **(env_extra or {})}
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT="))[7:])


@pytest.mark.spark
@pytest.mark.parametrize("backend", BACKENDS)
def test_python_worker_killed_is_retried_without_duplicates(tmp_path, backend):
    lake, markers = tmp_path / "lake", tmp_path / "markers"
    markers.mkdir()
    result = _run_scenario(f"worker_killed_scenario({str(lake)!r}, {str(markers)!r}, {backend!r})")
    killed = sorted(os.listdir(markers))
    assert len(killed) == 2, killed  # two tasks lost their worker on the first attempt, then were retried
    assert result["master"] == "local[2,2]" and result["backend"] == backend
    assert result["version"] == 0 and result["num_rows"] == N_USERS  # counted once, not per attempt
    assert result["rows"] == N_USERS == result["distinct"]  # every user exactly once
    table = DeltaTable(str(lake / "recs_faults")).to_pandas()
    assert len(table) == N_USERS and table["user_id"].is_unique


def _rows(spark, tag, n=30):
    return spark.createDataFrame([(f"{tag}{i}", float(i), "2024-01-01") for i in range(n)],
                                 "user_id string, score double, run_date string").repartition(3)


def _data_files(store):
    return sorted(p for p in glob.glob(os.path.join(store.path(RECS), "run_date=*", "*"))
                  if not os.path.basename(p).startswith("."))


@pytest.mark.spark
def test_failure_between_spark_write_and_commit_delta_rs(spark, tmp_path, monkeypatch):
    store = DeltaStore(spark, str(tmp_path / "lake"), delta_mode="delta_rs")
    part = [{"run_date": "2024-01-01"}]
    store.write(_rows(spark, "a"), RECS, replace_partitions=part)
    before = _data_files(store)

    def driver_dies_before_commit(self, *args, **kwargs):
        raise RuntimeError("driver lost before the Delta commit")

    monkeypatch.setattr(DeltaRsStore, "_commit", driver_dies_before_commit)
    with pytest.raises(RuntimeError, match="before the Delta commit"):
        store.write(_rows(spark, "b"), RECS, replace_partitions=part)
    assert store.version(RECS) == 0
    df, _ = store.read(RECS)
    assert sorted(r["user_id"] for r in df.collect()) == sorted(f"a{i}" for i in range(30))
    assert _data_files(store) == before  # the moved files of the failed attempt were deleted again
    assert not glob.glob(os.path.join(store.path(RECS), "_staging", "*"))
    monkeypatch.undo()
    res = store.write(_rows(spark, "b"), RECS, replace_partitions=part)  # the re-run completes
    assert (res.version, res.num_rows) == (1, 30)
    df, _ = store.read(RECS)
    assert sorted(r["user_id"] for r in df.collect()) == sorted(f"b{i}" for i in range(30))


def native_commit_failure_scenario(lake: str, jar: str, marker: str) -> dict:
    """Runs in its own process, with FailingLogStore for file: tables (the commit file cannot be
    written while `marker` exists)."""
    spark = _session("faults-commit", {"spark.jars": jar,
                                       "spark.delta.logStore.file.impl": "genrec.testing.FailingLogStore"})
    try:
        store = DeltaStore(spark, lake, delta_mode="native")
        part = [{"run_date": "2024-01-01"}]
        store.write(_rows(spark, "a"), RECS, replace_partitions=part)
        before = _data_files(store)
        Path(marker).touch()
        try:
            store.write(_rows(spark, "b"), RECS, replace_partitions=part)
            error = None
        except Exception as e:  # noqa: BLE001 - reported to the test
            error = str(e)
        finally:
            os.remove(marker)
        after_failure = _data_files(store)
        version = store.version(RECS)
        users = sorted(r["user_id"] for r in store.read(RECS)[0].collect())
        vacuumed = store.vacuum(RECS, retention_hours=0).files_deleted  # the failed attempt's files
        after_vacuum = _data_files(store)
        vacuum_version = store.version(RECS)
        res = store.write(_rows(spark, "b"), RECS, replace_partitions=part)  # the re-run completes
        rerun_users = sorted(r["user_id"] for r in store.read(RECS)[0].collect())
        return {"error": error, "version": version, "users": users, "before": before, "after_failure": after_failure,
                "vacuumed": vacuumed, "after_vacuum": after_vacuum, "vacuum_version": vacuum_version,
                "rerun": [res.version, res.num_rows],
                "rerun_users": rerun_users}
    finally:
        spark.stop()


def _failing_log_store_jar(tmp_path) -> str:
    from udfs.session import delta_jars

    javac, jar = shutil.which("javac"), shutil.which("jar")
    if not (javac and jar):
        pytest.skip("javac/jar not found: cannot build the test LogStore")
    storage = [j for j in delta_jars() if "delta-storage" in os.path.basename(j)]
    if not storage:
        pytest.fail("no delta-storage JAR: run scripts/setup_env.sh")
    from pyspark.find_spark_home import _find_spark_home

    hadoop = glob.glob(os.path.join(_find_spark_home(), "jars", "hadoop-client-api-*.jar"))
    out = tmp_path / "classes"
    subprocess.run([javac, "-d", str(out), "-cp", os.pathsep.join(storage + hadoop),
                    str(REPO / "tests" / "java" / "FailingLogStore.java")], check=True, capture_output=True)
    target = tmp_path / "failing-logstore.jar"
    subprocess.run([jar, "cf", str(target), "-C", str(out), "."], check=True, capture_output=True)
    return str(target)


@pytest.mark.spark
def test_failure_between_spark_write_and_commit_native(spark, tmp_path):
    from tests.conftest import require_backend

    require_backend(spark, "native")
    jar = _failing_log_store_jar(tmp_path)
    marker = tmp_path / "fail-commit"
    result = _run_scenario(f"native_commit_failure_scenario({str(tmp_path / 'lake')!r}, {jar!r}, {str(marker)!r})",
                           {"GENREC_FAIL_COMMIT": str(marker)})
    assert "injected: driver lost before the Delta commit" in (result["error"] or "")
    assert result["version"] == 0  # the table stayed where it was
    assert result["users"] == sorted(f"a{i}" for i in range(30))
    orphans = sorted(set(result["after_failure"]) - set(result["before"]))
    assert orphans and set(result["before"]) <= set(result["after_failure"])  # written, never committed
    lake = tmp_path / "lake" / "recs_faults"
    assert len(DeltaTable(str(lake), version=0).to_pandas()) == 30
    assert result["vacuumed"] == len(orphans) and result["after_vacuum"] == result["before"]  # VACUUM clears them
    assert result["vacuum_version"] == 2  # VACUUM START + END: the connector logs what it deleted
    assert result["rerun"] == [3, 30] and result["rerun_users"] == sorted(f"b{i}" for i in range(30))
    assert sorted(DeltaTable(str(lake)).to_pandas()["user_id"]) == sorted(f"b{i}" for i in range(30))
