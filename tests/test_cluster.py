"""The ingest job submitted with spark-submit to a real Spark standalone cluster (a master and two
workers on 127.0.0.1, started from the installed pyspark), writing through the Delta connector
(lakehouse.delta_mode=native) with the connector JARs shipped to the executors by `--jars`, exactly
as the README's cluster recipe; then its tables read back with delta-rs.

Needs udfs/session.py to honour spark-submit's --master (read the JVM's conf when launched by
spark-submit); without that the job silently runs in local mode and the executor check fails."""
import os
import socket
import subprocess
import sys
import glob
import json
import time
from pathlib import Path

import pytest
from deltalake import DeltaTable

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[1]
MOVIES = "movieId,title,genres\n1,Toy Story,Animation\n2,Heat,Action|Crime\n2,Heat again,Action\n,No id,Drama\n"
RATINGS = ("userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,2,5.0,964982224\n1,2,5.0,964982224\n"
           "2,99,3.0,964982300\n2,1,3.5,964981000\n3,2,2.0,not-a-time\n")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(predicate, what: str, timeout: float = 120) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return
        time.sleep(1)
    raise TimeoutError(f"cluster: {what} not ready after {timeout}s")


def test_spark_submit_ingest_on_standalone_cluster(tmp_path):
    from pyspark.find_spark_home import _find_spark_home

    spark_home = _find_spark_home()
    spark_class = os.path.join(spark_home, "bin", "spark-class")
    env = {**os.environ, "SPARK_HOME": spark_home, "PYSPARK_PYTHON": sys.executable,
           "PYSPARK_DRIVER_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1",
           "SPARK_WORKER_DIR": str(tmp_path / "work")}
    port = _free_port()
    master_url = f"spark://127.0.0.1:{port}"
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = []

    def start(name, *args):
        out = open(logs / f"{name}.log", "w")
        procs.append((subprocess.Popen([spark_class, *args], env=env, stdout=out, stderr=subprocess.STDOUT),
                      out))

    try:
        start("master", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
              "--webui-port", str(_free_port()))
        _wait_for(lambda: "I have been elected leader" in (logs / "master.log").read_text(), "master")
        for i in range(2):
            start(f"worker{i}", "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--cores", "1",
                  "--memory", "1g", "--webui-port", str(_free_port()), master_url)
        _wait_for(lambda: (logs / "master.log").read_text().count("Registering worker") == 2, "workers")

        raw = tmp_path / "raw"
        raw.mkdir()
        (raw / "movies.csv").write_text(MOVIES)
        (raw / "ratings.csv").write_text(RATINGS)
        conf = tmp_path / "cluster.yaml"
        conf.write_text(f"run_date: 2024-05-01\ndata:\n  dataset: mini\n  format: movielens_csv\n  path: {raw}\n"
                        f"  input_partitions: 2\nlakehouse:\n  root: {tmp_path / 'lake'}\n  delta_mode: native\n"
                        f"artifacts:\n  root: {tmp_path / 'art'}\n")
        from udfs.session import DELTA_CATALOG, DELTA_EXTENSION, delta_jars

        jars = delta_jars()
        assert any("delta-spark_" in os.path.basename(j) for j in jars), "run scripts/setup_env.sh (fetches .jars)"
        submit_log = tmp_path / "submit.log"  # the driver's log: on a timeout it shows the step it was in
        with open(submit_log, "w") as err:
            submit = subprocess.run(
                [os.path.join(spark_home, "bin", "spark-submit"), "--master", master_url,
                 "--jars", ",".join(jars), "--conf", f"spark.sql.extensions={DELTA_EXTENSION}",
                 "--conf", f"spark.sql.catalog.spark_catalog={DELTA_CATALOG}",
                 "--conf", "spark.executor.memory=512m", "--conf", "spark.executor.cores=1",
                 "--conf", f"spark.pyspark.python={sys.executable}", "--driver-memory", "1g",
                 str(REPO / "jobs" / "ingest.py"), "--conf", str(conf)],
                cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=err, text=True, timeout=900)
        submit.stderr = submit_log.read_text()
        assert submit.returncode == 0, submit.stderr[-4000:]
        lake = tmp_path / "lake"
        catalog = DeltaTable(str(lake / "catalog")).to_pandas()
        assert sorted(catalog["item_id"]) == ["1", "2"]
        inter = DeltaTable(str(lake / "interactions")).to_pandas()
        assert sorted(zip(inter["user_id"], inter["item_id"])) == [("1", "1"), ("1", "2"), ("2", "1")]
        reasons = sorted(DeltaTable(str(lake / "rejects")).to_pandas()["reason"])
        assert reasons == ["bad_timestamp", "duplicate_interaction", "duplicate_item_id", "null_item_id",
                           "unknown_item"]
        runs = DeltaTable(str(lake / "job_runs")).to_pandas()
        assert runs["status"].tolist() == ["succeeded"]
        launched = [(logs / f"worker{i}.log").read_text().count("Asked to launch executor") for i in range(2)]
        assert launched == [1, 1]  # the job ran on both workers' executors, not in a local-mode driver
        # PythonRunner forwards the Python driver's stdout and stderr (the job's log) to spark-submit's stdout
        assert "delta_path=native" in submit.stdout and "backend=native" in submit.stdout, submit.stdout[-3000:]
        for table in ("catalog", "interactions", "rejects", "job_runs"):  # every commit came from the connector
            for commit in sorted(glob.glob(str(lake / table / "_delta_log" / "*.json"))):
                info = next(json.loads(line)["commitInfo"] for line in open(commit) if '"commitInfo"' in line)
                assert info["engineInfo"].startswith("Apache-Spark/") and "Delta-Lake/" in info["engineInfo"], info
        shipped = glob.glob(str(tmp_path / "work" / "app-*" / "*" / "delta-spark_*.jar"))
        assert shipped, "the connector JAR was not shipped to the executors"
    finally:
        for proc, out in reversed(procs):
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            out.close()
