"""Two writers replacing the same partition at once: one commit wins, the other retries on a fresh
snapshot; the partition ends with exactly one writer's rows, never both, never duplicates."""
import threading

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

import udfs.delta_store as delta_store
from genrec_model.data.schemas import TableSpec
from udfs.delta_store import ConcurrentWriteError, DeltaStore

pytestmark = pytest.mark.spark

RECS = TableSpec(
    "recs_race",
    pa.schema([pa.field("user_id", pa.string(), False), pa.field("item", pa.string(), False),
               pa.field("run_date", pa.string(), False), pa.field("model", pa.string(), False)]),
    partition_by=("run_date", "model"), write_mode="partition")
PART = [{"run_date": "2024-01-01", "model": "genrec"}]
N = 40


def _rows(spark, tag, date="2024-01-01"):
    return spark.createDataFrame([(f"u{i}", f"{tag}{i}", date, "genrec") for i in range(N)],
                                 "user_id string, item string, run_date string, model string").repartition(2)


def _race(spark, store, monkeypatch, tags=("a", "b")):
    """Both writers compute their removes from the same snapshot before either commits."""
    barrier = threading.Barrier(len(tags), timeout=120)
    waited = set()
    real = delta_store._remove_actions

    def synced(table, spec, partitions):
        out = real(table, spec, partitions)
        me = threading.get_ident()
        if me not in waited:  # only the first attempt of each writer is synchronised
            waited.add(me)
            barrier.wait()
        return out

    monkeypatch.setattr(delta_store, "_remove_actions", synced)
    results, errors = {}, {}

    def writer(tag):
        try:
            results[tag] = store.write(_rows(spark, tag), RECS, replace_partitions=PART)
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
def test_racing_partition_replaces_leave_one_writer(spark, tmp_path, monkeypatch, existing):
    store = DeltaStore(spark, str(tmp_path / "lake"))
    store.write(_rows(spark, "o", date="2023-12-31"), RECS, replace_partitions=[{"run_date": "2023-12-31",
                                                                                 "model": "genrec"}])
    if existing:
        store.write(_rows(spark, "old"), RECS, replace_partitions=PART)
    before = store.version(RECS)
    results, errors = _race(spark, store, monkeypatch)
    assert errors == {} and len(results) == 2
    assert store.conflicts_seen == 1  # the loser saw the conflict and retried once
    assert sorted(r.version for r in results.values()) == [before + 1, before + 2]
    rows = _partition(store)
    tags = {item[0] for _, item in rows}
    assert len(rows) == N and len(set(rows)) == N  # no duplicates
    assert len(tags) == 1 and tags <= {"a", "b"}  # exactly one writer's rows
    winner = max(results, key=lambda t: results[t].version)  # last commit wins the partition
    assert tags == {winner}
    assert DeltaTable(store.path(RECS)).to_pandas()["run_date"].value_counts().to_dict() == {
        "2024-01-01": N, "2023-12-31": N}


def test_gives_up_cleanly_after_retries(spark, tmp_path, monkeypatch):
    store = DeltaStore(spark, str(tmp_path / "lake"), commit_retries=1)
    store.write(_rows(spark, "old"), RECS, replace_partitions=PART)
    real = delta_store._remove_actions

    def someone_else_commits_first(table, spec, partitions):  # another writer wins every time
        write_deltalake(store.path(RECS), pa.table({"user_id": ["x"], "item": ["x"], "run_date": ["2024-01-09"],
                                                    "model": ["genrec"]}, schema=RECS.schema), mode="append")
        return real(table, spec, partitions)

    monkeypatch.setattr(delta_store, "_remove_actions", someone_else_commits_first)
    with pytest.raises(ConcurrentWriteError, match="lost to concurrent writers 2 times"):
        store.write(_rows(spark, "new"), RECS, replace_partitions=PART)
    assert store.conflicts_seen == 2
    rows = _partition(store)
    assert len(rows) == N and {item[:3] for _, item in rows} == {"old"}  # previous rows intact


def test_delta_rs_rebase_alone_would_duplicate(tmp_path):
    """Why DeltaStore does not let delta-rs retry a replace: two 'replace' commits from the same
    snapshot of an empty partition are both plain appends to delta-rs, and both land."""
    path = str(tmp_path / "t")
    write_deltalake(path, pa.table({"k": ["seed"], "p": ["x"]}), partition_by=["p"])
    t1, t2 = DeltaTable(path), DeltaTable(path)
    for tag, table in (("a", t1), ("b", t2)):
        write_deltalake(table, pa.table({"k": [tag], "p": ["y"]}), mode="append")
    assert sorted(DeltaTable(path).to_pandas().query("p == 'y'")["k"]) == ["a", "b"]
