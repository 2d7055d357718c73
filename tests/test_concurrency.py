"""Two writers replacing the same partition at once, on both backends: one commit wins, the other
retries on a fresh snapshot; the partition ends with exactly one writer's rows, never both, never
duplicates. A writer that keeps losing gives up cleanly."""
import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

import udfs.delta_rs as delta_rs
from genrec_model.data.schemas import TableSpec
from udfs.delta_store import ConcurrentWriteError, DeltaStore, nullable_arrow_schema

pytestmark = pytest.mark.spark

RECS = TableSpec(
    "recs_race",
    pa.schema([pa.field("user_id", pa.string(), False), pa.field("item", pa.string(), False),
               pa.field("run_date", pa.string(), False), pa.field("model", pa.string(), False)]),
    partition_by=("run_date", "model"), write_mode="partition")
DDL = "user_id string, item string, run_date string, model string"
PART = [{"run_date": "2024-01-01", "model": "genrec"}]
N = 40


def _rows(spark, tag, date="2024-01-01"):
    return spark.createDataFrame([(f"u{i}", f"{tag}{i}", date, "genrec") for i in range(N)], DDL).repartition(2)


def _file_barrier(folder: str, me: str, everyone: tuple[str, ...]):
    """Inside the write task: announce this writer, wait until every writer's task runs. Each native
    transaction reads its snapshot before its tasks start, so when all pass, all read the same version."""
    def fn(batches):
        Path(folder, me).touch()
        deadline = time.time() + 120
        while not all(Path(folder, t).exists() for t in everyone):
            if time.time() > deadline:
                raise TimeoutError("the other writer never started")
            time.sleep(0.05)
        yield from batches
    return fn


def _race(spark, store, backend, monkeypatch, tmp_path, tags=("a", "b")):
    """Both writers take their snapshot before either commits."""
    frames = {t: _rows(spark, t) for t in tags}
    if backend == "delta_rs":  # the snapshot is read on the driver, after the Spark write
        barrier = threading.Barrier(len(tags), timeout=120)
        waited = set()
        real = delta_rs._remove_actions

        def synced(table, spec, partitions):
            out = real(table, spec, partitions)
            me = threading.get_ident()
            if me not in waited:  # only the first attempt of each writer is synchronised
                waited.add(me)
                barrier.wait()
            return out

        monkeypatch.setattr(delta_rs, "_remove_actions", synced)
    else:  # one task per write (2 cores: both run at once), held until both writers' tasks run
        folder = tmp_path / "barrier"
        folder.mkdir()
        frames = {t: df.coalesce(1).mapInPandas(_file_barrier(str(folder), t, tags), DDL) for t, df in frames.items()}
    results, errors = {}, {}

    def writer(tag):
        try:
            results[tag] = store.write(frames[tag], RECS, replace_partitions=PART)
        except Exception as e:  # noqa: BLE001 - reported by the test
            errors[tag] = e

    threads = [threading.Thread(target=writer, args=(t,)) for t in tags]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors


def _partition(store):
    df, _ = store.read(RECS)
    rows = [(r["user_id"], r["item"]) for r in df.where("run_date = '2024-01-01' and model = 'genrec'").collect()]
    return rows


@pytest.mark.parametrize("existing", [False, True], ids=["new_partition", "existing_partition"])
def test_racing_partition_replaces_leave_one_writer(spark, tmp_path, monkeypatch, backend, existing):
    store = DeltaStore(spark, str(tmp_path / "lake"), delta_mode=backend)
    store.write(_rows(spark, "o", date="2023-12-31"), RECS, replace_partitions=[{"run_date": "2023-12-31",
                                                                                 "model": "genrec"}])
    if existing:
        store.write(_rows(spark, "old"), RECS, replace_partitions=PART)
    before = store.version(RECS)
    results, errors = _race(spark, store, backend, monkeypatch, tmp_path)
    assert errors == {} and len(results) == 2
    assert store.conflicts_seen == 1  # the loser saw the conflict and retried once
    assert sorted(r.version for r in results.values()) == [before + 1, before + 2]
    assert all(r.num_rows == N for r in results.values())
    rows = _partition(store)
    tags = {item[0] for _, item in rows}
    assert len(rows) == N and len(set(rows)) == N  # no duplicates
    assert len(tags) == 1 and tags <= {"a", "b"}  # exactly one writer's rows
    winner = max(results, key=lambda t: results[t].version)  # last commit wins the partition
    assert tags == {winner}
    assert DeltaTable(store.path(RECS)).to_pandas()["run_date"].value_counts().to_dict() == {
        "2024-01-01": N, "2023-12-31": N}


def _someone_else_appends(path):
    write_deltalake(path, pa.table({"user_id": ["x"], "item": ["x"], "run_date": ["2024-01-01"], "model": ["genrec"]},
                                   schema=nullable_arrow_schema(RECS.schema)), mode="append")


def test_gives_up_cleanly_after_retries(spark, tmp_path, monkeypatch, backend):
    store = DeltaStore(spark, str(tmp_path / "lake"), delta_mode=backend, commit_retries=1)
    store.write(_rows(spark, "old"), RECS, replace_partitions=PART)
    path = store.path(RECS)
    new = _rows(spark, "new")
    if backend == "delta_rs":
        real = delta_rs._remove_actions

        def someone_else_commits_first(table, spec, partitions):  # another writer wins every time
            _someone_else_appends(path)
            return real(table, spec, partitions)

        monkeypatch.setattr(delta_rs, "_remove_actions", someone_else_commits_first)
    else:  # every attempt's task lets another engine commit into the partition being replaced
        def interfere(batches):
            _someone_else_appends(path)
            yield from batches

        new = new.coalesce(1).mapInPandas(interfere, DDL)
    with pytest.raises(ConcurrentWriteError, match="lost to concurrent writers 2 times"):
        store.write(new, RECS, replace_partitions=PART)
    assert store.conflicts_seen == 2
    rows = _partition(store)
    assert sorted(item for _, item in rows if item == "x") == ["x", "x"]  # the two winning commits
    assert len(rows) == N + 2 and {item[:3] for _, item in rows if item != "x"} == {"old"}  # ours: nothing


def test_delta_rs_rebase_alone_would_duplicate(tmp_path):
    """Why DeltaStore does not let delta-rs retry a replace: two 'replace' commits from the same
    snapshot of an empty partition are both plain appends to delta-rs, and both land."""
    path = str(tmp_path / "t")
    write_deltalake(path, pa.table({"k": ["seed"], "p": ["x"]}), partition_by=["p"])
    t1, t2 = DeltaTable(path), DeltaTable(path)
    for tag, table in (("a", t1), ("b", t2)):
        write_deltalake(table, pa.table({"k": [tag], "p": ["y"]}), mode="append")
    assert sorted(DeltaTable(path).to_pandas().query("p == 'y'")["k"]) == ["a", "b"]
