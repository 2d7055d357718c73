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


@pytest.fixture
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared datasets not found at {SHARED_DATA}")
    return SHARED_DATA
