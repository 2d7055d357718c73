"""The Spark evaluation equals the numpy reference metrics on a small hand-made case."""
import datetime as dt

import numpy as np
import pytest
from deltalake import DeltaTable

from genrec_model.config import load_config
from genrec_model.data.schemas import CATALOG, INTERACTIONS, METRICS, RECOMMENDATIONS
from genrec_model.evaluation.metrics import recall_ndcg_at_k
from genrec_model.serve.diversity import intra_list_diversity
from jobs.common import make_context, run_recorded
from jobs.evaluate import run as run_evaluate
from udfs.delta_store import spark_schema

pytestmark = pytest.mark.spark

# user -> history (oldest first); test target = last, valid target = second-to-last
HISTORIES = {"u1": ["a", "b", "c"], "u2": ["b", "c", "d", "a"], "u3": ["c", "a"], "u4": ["d", "b", "c"]}
CATS = {"a": ["x"], "b": ["x"], "c": ["y"], "d": []}
TEST_LISTS = {"u1": ["c", "a", "d"], "u2": ["b", "d", "a"], "u3": ["b", "d", "c"]}  # u4 has no list: a miss
VALID_LISTS = {"u1": ["b", "c", "d"], "u2": ["c", "d", "a"], "u4": ["b", "a", "d"]}


def test_evaluate_matches_reference(spark, tmp_path):
    cfg = load_config(None, ["data.dataset=mini", "data.path=/unused", f"lakehouse.root={tmp_path}",
                             "run_date=2024-06-01", "evaluate.ks=[1, 2, 3, 5]", "evaluate.diversity_k=3"])
    ctx = make_context("evaluate", cfg, spark)
    now = dt.datetime(2024, 6, 1, tzinfo=dt.timezone.utc)
    inter = [(u, i, None, p, None) for u, items in HISTORIES.items() for p, i in enumerate(items)]
    ctx.store.write(spark.createDataFrame(inter, spark_schema(INTERACTIONS)), INTERACTIONS)
    ctx.store.write(spark.createDataFrame([(i, i, None, c, None, None, "h") for i, c in CATS.items()],
                                          spark_schema(CATALOG)), CATALOG)
    recs = [(u, [(it, -float(r), r + 1) for r, it in enumerate(lst)], False, "m1", "cb", now, "2024-06-01", split,
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
    assert set(got["run_date"]) == {"2024-06-01"}
    assert not (got["k"] == 5).any()  # lists hold 3 items: nothing is reported past that
