"""The Spark evaluation equals the numpy reference metrics on a small hand-made case, per segment
(cold-start protocol), and migrates a metrics table written before segments existed."""
import dataclasses
import datetime as dt

import numpy as np
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from genrec_model.config import load_config
from genrec_model.data.schemas import CATALOG, INTERACTIONS, METRICS, RECOMMENDATIONS
from genrec_model.data.splits import cold_item_mask
from genrec_model.evaluation.metrics import recall_ndcg_at_k
from genrec_model.serve.diversity import intra_list_diversity
from jobs.common import make_context, run_recorded
from jobs.evaluate import run as run_evaluate
from jobs.report import run as run_report
from udfs.delta_store import spark_schema

pytestmark = pytest.mark.spark

# user -> history (oldest first); test target = last, valid target = second-to-last
HISTORIES = {"u1": ["a", "b", "c"], "u2": ["b", "c", "d", "a"], "u3": ["c", "a"], "u4": ["d", "b", "c"]}
CATS = {"a": ["x"], "b": ["x"], "c": ["y"], "d": []}
TEST_LISTS = {"u1": ["c", "a", "d"], "u2": ["b", "d", "a"], "u3": ["b", "d", "c"]}  # u4 has no list: a miss
VALID_LISTS = {"u1": ["b", "c", "d"], "u2": ["c", "d", "a"], "u4": ["b", "a", "d"]}
DAY = dt.date(2024, 6, 1)  # the run_date of the configs below


def test_evaluate_matches_reference(spark, tmp_path):
    cfg = load_config(None, ["data.dataset=mini", "data.path=/unused", f"lakehouse.root={tmp_path}",
                             "run_date=2024-06-01", "evaluate.ks=[1, 2, 3, 5]", "evaluate.diversity_k=3"])
    ctx = make_context("evaluate", cfg, spark)
    now = dt.datetime(2024, 6, 1, tzinfo=dt.timezone.utc)
    inter = [(u, i, None, p, None) for u, items in HISTORIES.items() for p, i in enumerate(items)]
    ctx.store.write(spark.createDataFrame(inter, spark_schema(INTERACTIONS)), INTERACTIONS)
    ctx.store.write(spark.createDataFrame([(i, i, None, c, None, None, "h") for i, c in CATS.items()],
                                          spark_schema(CATALOG)), CATALOG)
    recs = [(u, [(it, -float(r), r + 1) for r, it in enumerate(lst)], False, "m1", "cb", now, DAY, split,
             "genrec") for split, lists in (("test", TEST_LISTS), ("valid", VALID_LISTS)) for u, lst in lists.items()]
    ctx.store.write(spark.createDataFrame(recs, spark_schema(RECOMMENDATIONS)), RECOMMENDATIONS,
                    replace_partitions=[{"run_date": "2024-06-01", "split": s, "model": "genrec"}
                                        for s in ("test", "valid")])
    run_recorded(ctx, run_evaluate)

    got = DeltaTable(ctx.store.path(METRICS)).to_pandas()
    index = {x: i for i, x in enumerate("abcd")}
    for split, lists, offset in (("test", TEST_LISTS, 1), ("valid", VALID_LISTS, 2)):
        users = [u for u, h in HISTORIES.items() if len(h) >= offset + 1]
        ranked = np.array([[index[i] for i in lists.get(u, [])] or [-1, -1, -1] for u in users])
        target = np.array([index[HISTORIES[u][-offset]] for u in users])
        want = recall_ndcg_at_k(ranked, target, ks=(1, 2, 3))
        rows = got[(got["split"] == split) & (got["model"] == "genrec")]
        for name, value in want.items():
            metric, k = name.split("@")
            have = rows[(rows["metric"] == metric) & (rows["k"] == int(k))]["value"].item()
            assert have == pytest.approx(value), (split, name)
        assert rows[rows["metric"] == "users"]["value"].item() == len(users)
    # test split by hand: u1 rank 1, u2 rank 3, u3 rank 0 (target a not listed), u4 no list
    test = got[(got["split"] == "test")].set_index(["metric", "k"])["value"]
    assert test[("recall", 1)] == pytest.approx(1 / 4) and test[("recall", 3)] == pytest.approx(2 / 4)
    assert test[("ndcg", 3)] == pytest.approx((1.0 + 0.5) / 4)
    assert test[("coverage", 3)] == pytest.approx(4 / 4)
    cat_index = np.array([0, 0, 1, -1])  # a,b -> x, c -> y, d -> none (left out of pairs)
    lists = np.array([[index[i] if CATS[i] else -1 for i in lst] for lst in TEST_LISTS.values()])
    assert test[("intra_list_diversity", 3)] == pytest.approx(intra_list_diversity(lists, cat_index))
    assert set(got["run_date"]) == {DAY}  # a date (Arrow date32), not text
    assert not (got["k"] == 5).any()  # lists hold 3 items: nothing is reported past that
    assert set(got["segment"]) == {"all"}  # no withheld items: no warm / cold rows


def _write_inputs(ctx, spark):
    now = dt.datetime(2024, 6, 1, tzinfo=dt.timezone.utc)
    inter = [(u, i, None, p, None) for u, items in HISTORIES.items() for p, i in enumerate(items)]
    ctx.store.write(spark.createDataFrame(inter, spark_schema(INTERACTIONS)), INTERACTIONS)
    ctx.store.write(spark.createDataFrame([(i, i, None, c, None, None, "h") for i, c in CATS.items()],
                                          spark_schema(CATALOG)), CATALOG)
    recs = [(u, [(it, -float(r), r + 1) for r, it in enumerate(lst)], False, "m1", "cb", now, DAY, split,
             "genrec") for split, lists in (("test", TEST_LISTS), ("valid", VALID_LISTS)) for u, lst in lists.items()]
    ctx.store.write(spark.createDataFrame(recs, spark_schema(RECOMMENDATIONS)), RECOMMENDATIONS,
                    replace_partitions=[{"run_date": "2024-06-01", "split": s, "model": "genrec"}
                                        for s in ("test", "valid")])


# data.cold_seed=3, cold_item_share=0.3 withholds item "a" alone (draws a .241, b .583, c .729, d .753)
COLD = ["data.cold_item_share=0.3", "data.cold_seed=3"]


def test_cold_segment_by_hand(spark, tmp_path):
    assert cold_item_mask(list("abcd"), 0.3, 3).tolist() == [True, False, False, False]
    cfg = load_config(None, ["data.dataset=mini", "data.path=/unused", f"lakehouse.root={tmp_path}",
                             f"artifacts.root={tmp_path / 'art'}", "run_date=2024-06-01", "evaluate.ks=[1, 3]",
                             "evaluate.diversity_k=3", *COLD])
    ctx = make_context("evaluate", cfg, spark)
    _write_inputs(ctx, spark)
    run_recorded(ctx, run_evaluate)
    got = DeltaTable(ctx.store.path(METRICS)).to_pandas()
    test = got[got["split"] == "test"].set_index(["segment", "metric", "k"])["value"]
    # test targets: u1 c (rank 1), u2 a (rank 3), u3 a (not listed), u4 c (no list)
    # cold = users whose target is a: u2, u3; warm: u1, u4; all: the four
    users = got[(got["split"] == "test") & (got["metric"] == "users")].set_index("segment")["value"]
    assert users.to_dict() == {"all": 4.0, "warm": 2.0, "cold": 2.0}
    assert test[("cold", "recall", 1)] == 0.0 and test[("cold", "recall", 3)] == pytest.approx(1 / 2)
    assert test[("cold", "ndcg", 3)] == pytest.approx(0.5 / 2)  # u2: 1/log2(3+1)
    assert test[("warm", "recall", 1)] == pytest.approx(1 / 2) and test[("warm", "ndcg", 3)] == pytest.approx(1 / 2)
    assert test[("all", "recall", 3)] == pytest.approx(2 / 4) and test[("all", "ndcg", 3)] == pytest.approx(1.5 / 4)
    # coverage over the segment's lists: cold u2 [b d a] u3 [b d c] -> 4 of 4; warm u1 [c a d] -> 3 of 4
    assert test[("cold", "coverage", 3)] == 1.0 and test[("warm", "coverage", 3)] == pytest.approx(3 / 4)
    # share of listed slots holding the withheld item a: u1 1/3, u2 1/3, u3 0
    assert test[("all", "cold_item_share", 3)] == pytest.approx(2 / 9)
    assert test[("cold", "cold_item_share", 3)] == pytest.approx(1 / 6)
    assert test[("warm", "cold_item_share", 3)] == pytest.approx(1 / 3)
    # valid targets b, d, b: no cold user, so no cold rows; warm = all
    valid = got[got["split"] == "valid"]
    assert set(valid["segment"]) == {"all", "warm"}
    v = valid.set_index(["segment", "metric", "k"])["value"]
    assert v[("warm", "recall", 3)] == v[("all", "recall", 3)] == pytest.approx(3 / 3)
    assert ctx.counts["cold_targets.test"] == 2 and "cold_targets.valid" not in ctx.counts
    assert ctx.counts["genrec.test.cold.recall@3"] == pytest.approx(1 / 2)
    assert ctx.counts["genrec.test.recall@3"] == pytest.approx(2 / 4)  # `all` keeps its pre-segment key
    # the report shows the segments: a table column and one row of plot panels per segment
    report = make_context("report", cfg, spark)
    run_recorded(report, run_report)
    html = (tmp_path / "art" / "reports" / "2024-06-01" / "report.html").read_text()
    assert "<th>segment</th>" in html and "<td>cold</td>" in html and "<td>warm</td>" in html


def test_metrics_table_from_before_segments_is_migrated(spark, tmp_path, backend):
    """A metrics table written before the segment column existed: evaluate adds the column, marks the old
    rows segment=all, keeps them, and writes its own run date; a second run has nothing to migrate."""
    cfg = load_config(None, ["data.dataset=mini", "data.path=/unused", f"lakehouse.root={tmp_path}",
                             f"lakehouse.delta_mode={backend}", "run_date=2024-06-01", "evaluate.ks=[1, 3]",
                             "evaluate.diversity_k=3", *COLD])
    ctx = make_context("evaluate", cfg, spark)
    _write_inputs(ctx, spark)
    legacy = dataclasses.replace(METRICS, schema=pa.schema([f for f in METRICS.schema if f.name != "segment"]))
    day = dt.date(2024, 5, 1)
    old = [("r0", "mini", "genrec", "test", "recall", 10, 0.125, "h0", day),
           ("r0", "mini", "genrec", "test", "users", None, 4.0, "h0", day)]
    ctx.store.write(spark.createDataFrame(old, spark_schema(legacy)), legacy,
                    replace_partitions=[{"run_date": "2024-05-01"}])
    run_recorded(ctx, run_evaluate)
    assert ctx.counts["migrated.metrics.segment_run_dates"] == 1
    got = DeltaTable(ctx.store.path(METRICS)).to_pandas()
    before = got[got["run_date"].astype(str) == "2024-05-01"]
    assert sorted(before["value"]) == [0.125, 4.0] and set(before["segment"]) == {"all"}
    now = got[got["run_date"].astype(str) == "2024-06-01"]
    assert set(now["segment"]) == {"all", "warm", "cold"}
    df, _ = ctx.store.read(METRICS)  # the store reads it back with the declared schema
    assert df.where("segment IS NULL").count() == 0 and df.count() == len(got)
    again = make_context("evaluate", cfg, spark)
    run_recorded(again, run_evaluate)
    assert not any(k.startswith("migrated.") for k in again.counts)
    assert len(DeltaTable(ctx.store.path(METRICS)).to_pandas()) == len(got)
