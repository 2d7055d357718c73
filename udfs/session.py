"""SparkSession for genrec jobs: the same settings under `genrec run` and `spark-submit`.

The Delta Lake Spark connector is loaded from local JAR files fetched once by `scripts/setup_env.sh`
(`delta_jars()`), never from the network at run time. Where they are, the session starts with
`spark.jars` naming them plus the Delta SQL extension and catalog, and `lakehouse.delta_mode: auto`
then writes through the connector. Under spark-submit the JVM is already up: whatever it was given
(`--jars`/`--packages`) is used, and the extension is added when the connector's classes load.
"""
from __future__ import annotations

import glob
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
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
DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
# Where setup_env.sh puts the connector; GENREC_DELTA_JARS overrides it ("none": no connector).
JARS_ENV = "GENREC_DELTA_JARS"
_REPO_JARS = Path(__file__).resolve().parents[1] / ".jars"


def delta_jars_dir(configured: str = "") -> Path | None:
    """The folder holding the connector JARs: $GENREC_DELTA_JARS, else `configured` (config
    `spark.delta_jars`), else <repo>/.jars next to this package, else ./.jars. None when disabled or
    when no candidate holds a delta-spark JAR."""
    env = os.environ.get(JARS_ENV)
    if env is not None and env.strip().lower() in ("", "none", "off", "0"):
        return None
    candidates = [env] if env else ([configured] if configured else [_REPO_JARS, Path.cwd() / ".jars"])
    for cand in candidates:
        folder = Path(cand).expanduser()
        if glob.glob(str(folder / "delta-spark_*.jar")):
            return folder.resolve()
    if env or configured:  # an explicit location without the connector is a setup error, not a fallback
        raise FileNotFoundError(f"no delta-spark JAR in {candidates[0]} (from {JARS_ENV or 'spark.delta_jars'}); "
                                f"run scripts/setup_env.sh or point {JARS_ENV} at the folder it fills")
    return None


def delta_jars(configured: str = "") -> list[str]:
    """Absolute paths of the connector JARs (connector, delta-storage, their runtime deps), or []."""
    folder = delta_jars_dir(configured)
    return sorted(glob.glob(str(folder / "*.jar"))) if folder else []


def _with_delta(conf: dict[str, str], jars: list[str]) -> dict[str, str]:
    """`conf` plus the connector JARs, SQL extension and catalog (keeping what `conf` already sets)."""
    out = dict(conf)
    if jars:
        out["spark.jars"] = ",".join([*(j for j in out.get("spark.jars", "").split(",") if j), *jars])
    extensions = [e for e in out.get("spark.sql.extensions", "").split(",") if e]
    if DELTA_EXTENSION not in extensions:
        out["spark.sql.extensions"] = ",".join([*extensions, DELTA_EXTENSION])
    out.setdefault("spark.sql.catalog.spark_catalog", DELTA_CATALOG)
    return out


def _jvm_has_delta(jvm=None) -> bool:
    """Whether the Delta extension class loads in the driver JVM (spark-submit's --jars / --packages
    land in Spark's own class loader, not the one py4j reflection starts from)."""
    from pyspark import SparkContext

    jvm = jvm or SparkContext._jvm
    for loader in (lambda: jvm.org.apache.spark.util.Utils.getContextOrSparkClassLoader(),
                   lambda: jvm.java.lang.Thread.currentThread().getContextClassLoader()):
        try:
            loader().loadClass(DELTA_EXTENSION)
            return True
        except Exception:
            continue
    return False


def delta_connector_loaded(spark) -> bool:
    """The session can write through the connector: extension configured and its classes load."""
    extensions = spark.conf.get("spark.sql.extensions", "") or ""
    return DELTA_EXTENSION in extensions and _jvm_has_delta(spark._jvm)


def build_spark(cfg: "SparkConfig", app_suffix: str = ""):
    """Get or create the session; a master given by spark-submit wins over `cfg.master`."""
    # Python workers must start this interpreter (with genrec installed), not the system python.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark import SparkConf, SparkContext
    from pyspark.sql import SparkSession

    submitted = bool(os.environ.get("PYSPARK_GATEWAY_PORT"))
    if submitted:  # under spark-submit its JVM already runs: read its --master etc.
        SparkContext._ensure_initialized()
    conf = SparkConf()  # picks up what spark-submit passed (only once the JVM is up)
    builder = SparkSession.builder.appName(f"{cfg.app_name}{'-' + app_suffix if app_suffix else ''}")
    if not conf.contains("spark.master"):
        builder = builder.master(cfg.master)
        builder = builder.config("spark.driver.memory", cfg.driver_memory)
    builder = builder.config("spark.sql.shuffle.partitions", str(cfg.shuffle_partitions))
    builder = builder.config("spark.ui.enabled", str(cfg.ui_enabled).lower())
    settings = {**_FIXED_CONF, **cfg.extra_conf}
    if submitted:
        # The driver's classpath is fixed by spark-submit (--jars / --packages): add the extension only
        # when the connector is there, and leave what the submitter configured alone.
        if _jvm_has_delta():
            settings = _with_delta({"spark.sql.extensions": conf.get("spark.sql.extensions", ""), **settings}, [])
    elif SparkContext._active_spark_context is None:
        jars = delta_jars(getattr(cfg, "delta_jars", ""))
        if jars:
            settings = _with_delta(settings, jars)
            # The connector rebuilds table state in 50 partitions by default: far too many tiny tasks
            # for a local session; follow the session's shuffle partitions unless configured.
            settings.setdefault("spark.databricks.delta.snapshotPartitions", str(cfg.shuffle_partitions))
    for key, value in settings.items():
        if key == "spark.sql.extensions" and not value:
            continue
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
