"""Ingest on small inline datasets with planted bad rows: exact accepted rows, exact rejects."""
import datetime as dt

import pytest
from deltalake import DeltaTable

from genrec_model.config import load_config
from genrec_model.data.schemas import CATALOG, INTERACTIONS, JOB_RUNS, REJECTS
from jobs.common import make_context, run_recorded
from jobs.ingest import run as run_ingest

pytestmark = pytest.mark.spark

MOVIES = """movieId,title,genres
1,Toy Story (1995),Adventure|Animation
2,"Heat, The &amp; Others (1995)",Action|Crime
2,Heat duplicate,Action
,No id,Drama
3,Nine Months (1995),(no genres listed)
"""
RATINGS = """userId,movieId,rating,timestamp
1,1,4.0,964982703
1,2,5.0,964982224
1,2,5.0,964982224
1,99,3.0,964982300
,1,3.0,964982301
2,,3.0,964982302
2,3,2.5,not-a-time
2,3,2.5,99999999999
2,1,3.5,964981000
2,3,4.0,2000-07-30T18:00:00Z
"""


def _ingest(spark, tmp_path, files: dict, overrides):
    raw = tmp_path / "raw"
    raw.mkdir()
    for name, text in files.items():
        (raw / name).write_text(text)
    cfg = load_config(None, [f"data.path={raw}", f"lakehouse.root={tmp_path / 'lake'}",
                             f"artifacts.root={tmp_path / 'art'}", "run_date=2024-05-01",
                             "data.input_partitions=2", *overrides])
    ctx = make_context("ingest", cfg, spark)
    run_recorded(ctx, run_ingest)
    return ctx


def _table(ctx, spec):
    return DeltaTable(ctx.store.path(spec)).to_pandas()


def test_movielens_csv_with_planted_bad_rows(spark, tmp_path):
    ctx = _ingest(spark, tmp_path, {"movies.csv": MOVIES, "ratings.csv": RATINGS},
                  ["data.dataset=mini", "data.format=movielens_csv"])
    catalog = _table(ctx, CATALOG).sort_values("item_id")
    assert catalog["item_id"].tolist() == ["1", "2", "3"]
    assert catalog["title"].tolist() == ["Toy Story (1995)", "Heat, The & Others (1995)", "Nine Months (1995)"]
    assert [list(c) for c in catalog["categories"]] == [["Adventure", "Animation"], ["Action", "Crime"], []]
    inter = _table(ctx, INTERACTIONS).sort_values(["user_id", "seq_pos"])
    got = list(zip(inter["user_id"], inter["item_id"], inter["seq_pos"], inter["rating"]))
    assert got == [("1", "2", 0, 5.0), ("1", "1", 1, 4.0),            # ordered by timestamp
                   ("2", "3", 0, 4.0), ("2", "1", 1, 3.5)]            # 18:00:00Z (ISO) before 964981000
    rejects = _table(ctx, REJECTS)
    reasons = sorted(zip(rejects["source"], rejects["reason"]))
    assert reasons == sorted([
        ("catalog", "duplicate_item_id"), ("catalog", "null_item_id"),
        ("interactions", "duplicate_interaction"), ("interactions", "unknown_item"),
        ("interactions", "null_user_id"), ("interactions", "null_item_id"),
        ("interactions", "bad_timestamp"), ("interactions", "timestamp_out_of_range")])
    assert set(rejects["run_id"]) == {ctx.run_id} and set(rejects["run_date"]) == {dt.date(2024, 5, 1)}
    dup = rejects[rejects["reason"] == "duplicate_item_id"]["record"].item()
    assert '"title": "Heat duplicate"' in dup
    assert ctx.counts["raw_items"] == 5 == ctx.counts["catalog"] + ctx.counts["item_rejects"]
    assert ctx.counts["raw_interactions"] == 10 == ctx.counts["interactions"] + ctx.counts["interaction_rejects"]
    runs = _table(ctx, JOB_RUNS)
    assert runs["status"].tolist() == ["succeeded"] and runs["job"].tolist() == ["ingest"]
    assert dict(runs["outputs"].item())["catalog"] == 0


def test_rerun_same_date_replaces_rejects(spark, tmp_path):
    ctx = _ingest(spark, tmp_path, {"movies.csv": MOVIES, "ratings.csv": RATINGS},
                  ["data.dataset=mini", "data.format=movielens_csv"])
    again = make_context("ingest", ctx.cfg, spark)
    run_recorded(again, run_ingest)
    assert len(_table(ctx, REJECTS)) == 8  # replaced, not doubled
    assert len(_table(ctx, CATALOG)) == 3 and DeltaTable(ctx.store.path(CATALOG)).version() == 1
    assert len(_table(ctx, JOB_RUNS)) == 2


def test_amazon_p5_sequences_keep_order_without_timestamps(spark, tmp_path):
    files = {"user_sequence.txt": "U1 A B C\nU2 C A\nU3\n",
             "items_asin_title.tsv": "asin\ttitle\nA\tLotion &#9733; 16 oz\nB\t\nC\tShampoo\n"}
    ctx = _ingest(spark, tmp_path, files, ["data.dataset=p5", "data.format=amazon_p5"])
    inter = _table(ctx, INTERACTIONS).sort_values(["user_id", "seq_pos"])
    assert list(zip(inter["user_id"], inter["item_id"], inter["seq_pos"])) == [
        ("U1", "A", 0), ("U1", "B", 1), ("U1", "C", 2), ("U2", "C", 0), ("U2", "A", 1)]
    assert inter["timestamp"].isna().all()
    catalog = _table(ctx, CATALOG).set_index("item_id")
    assert catalog.loc["A", "title"] == "Lotion \u2605 16 oz" and catalog.loc["B", "title"] == ""
    rejects = _table(ctx, REJECTS)
    assert rejects["reason"].tolist() == ["null_item_id"]  # the user with no items is counted and rejected
