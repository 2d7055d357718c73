"""SparkSession for genrec jobs: the same settings under `genrec run` and `spark-submit`."""
from __future__ import annotations

import os
import sys

from genrec_model.config import SparkConfig

# Parquet written by Spark must be readable by delta-rs and DuckDB: micro-second
# timestamps (not INT96), UTC session time.
_FIXED_CONF = {
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.sources.partitionColumnTypeInference.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
}


def build_spark(cfg: SparkConfig, app_suffix: str = ""):
    """Get or create the session; a master given by spark-submit wins over `cfg.master`."""
    # Python workers must start this interpreter (with genrec installed), not the system python.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark import SparkConf, SparkContext
    from pyspark.sql import SparkSession

    if os.environ.get("PYSPARK_GATEWAY_PORT"):  # under spark-submit its JVM already runs: read its --master etc.
        SparkContext._ensure_initialized()
    conf = SparkConf()  # picks up what spark-submit passed (only once the JVM is up)
    builder = SparkSession.builder.appName(f"{cfg.app_name}{'-' + app_suffix if app_suffix else ''}")
    if not conf.contains("spark.master"):
        builder = builder.master(cfg.master)
        builder = builder.config("spark.driver.memory", cfg.driver_memory)
    builder = builder.config("spark.sql.shuffle.partitions", str(cfg.shuffle_partitions))
    builder = builder.config("spark.ui.enabled", str(cfg.ui_enabled).lower())
    for key, value in {**_FIXED_CONF, **cfg.extra_conf}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def task_cores() -> int:
    """CPU cores one task may use (spark.task.cpus), for torch/ORT thread counts inside tasks."""
    try:
        from pyspark import TaskContext

        ctx = TaskContext.get()
        if ctx is not None:
            return max(1, int(ctx.cpus()))
    except Exception:  # outside a task, or an old pyspark without TaskContext.cpus
        pass
    return max(1, int(os.environ.get("GENREC_TASK_CPUS", "1")))
