import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("GENREC_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def spark():
    from genrec_model.config import SparkConfig
    from udfs.session import build_spark

    session = build_spark(SparkConfig(master="local[2]", shuffle_partitions=2, driver_memory="2g"), "tests")
    yield session
    session.stop()


BACKENDS = ("native", "delta_rs")


def require_backend(spark, backend: str) -> str:
    """Skip nothing silently: the native backend needs the connector JARs setup_env.sh fetches; only
    an explicit GENREC_DELTA_JARS=none (the delta-rs-only setup) turns its tests into skips."""
    if backend == "native":
        from udfs.session import delta_connector_loaded

        if not delta_connector_loaded(spark):
            if os.environ.get("GENREC_DELTA_JARS", "x").strip().lower() in ("", "none", "off", "0"):
                pytest.skip("GENREC_DELTA_JARS=none: no Delta connector in this setup")
            pytest.fail("the test session has no Delta connector: run scripts/setup_env.sh (fetches it into "
                        ".jars) or point GENREC_DELTA_JARS at the folder holding the delta-spark JARs")
    return backend


@pytest.fixture(params=BACKENDS)
def backend(request, spark):
    """Every Delta-touching test runs on both DeltaStore backends."""
    return require_backend(spark, request.param)


@pytest.fixture
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared datasets not found at {SHARED_DATA}")
    return SHARED_DATA
